// `berthd images import --offline ARCHIVE`: the same import into berth's store
// with no daemon running, for an image build (a kind node image), where berthd
// itself cannot start: no systemd runs and its root is on the build's overlay.
// The store is opened as berthd opens it and the archive goes through the same
// Images facade (staging, layer workers, limits, all-or-nothing). A running
// berthd is refused: two writers would race over layer directories and GC.
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { silentLog } from '../runtime/common/log';
import type { BerthConfig } from '../runtime/config';
import type { ImportedImage } from '../runtime/image/image-import';
import { Images } from '../runtime/image/images';
import { BerthDatabase } from '../runtime/store/database';

/** True when something accepts connections on the socket (a running berthd's admin socket). */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function importOffline(config: BerthConfig, adminSocket: string, archive: Readable): Promise<ImportedImage[]> {
  if (await socketAnswers(adminSocket)) {
    archive.destroy();
    throw new Error(`berthd is running (${adminSocket} answers): import through it, without --offline`);
  }
  mkdirSync(config.root, { recursive: true, mode: 0o700 });
  const db = new BerthDatabase(join(config.root, 'berth.db'));
  const images = new Images({ config, db, log: silentLog });
  try {
    images.init();
    return await images.importArchive(archive);
  } finally {
    await images.close();
    db.close();
  }
}
