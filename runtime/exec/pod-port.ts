// Port-forward's far end: a TCP connection to 127.0.0.1:<port> inside the pod's
// network namespace, opened by the native addon on a worker thread (setns,
// socket, connect), so no helper process (socat, nsenter) is involved.
import { connect, Socket } from 'node:net';
import { loadNative } from '../../native';

const CONNECT_TIMEOUT_MS = 10_000;

export async function connectPodPort(netnsPath: string, port: number): Promise<Socket> {
  if (netnsPath === '') {
    // A host-network pod: its ports are the host's.
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return socket;
  }
  const fd = await loadNative().connectInNetns(netnsPath, '127.0.0.1', port, CONNECT_TIMEOUT_MS);
  return new Socket({ fd, readable: true, writable: true });
}
