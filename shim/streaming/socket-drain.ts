// Backpressure on a client connection: wait until the socket drains, or until
// it closes (a client that went away never drains).
import type { Duplex } from 'node:stream';

export function drainedOrClosed(socket: Duplex): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
