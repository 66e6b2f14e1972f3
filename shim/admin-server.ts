// berthd's admin socket: operations for the node's administrator that the CRI
// has no call for (importing images from an archive), served over HTTP on a
// unix socket only root may open (<state>/admin/berth-admin.sock in a 0700
// directory, so there is no moment it is open to others), so the work
// happens inside the running daemon and its store stays consistent.
//   POST /images/import   body: a docker save archive or an OCI layout as a tar
//                         answer: {"images":[{"id":…,"names":[…]}]} or {"error":…}
//   GET /images/export?image=REF[&image=REF…]
//                         answer: one OCI layout tar of those images (application/x-tar), or {"error":…}
//                         before any of it; a failure while streaming cuts the connection (a short archive)
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import type { RuntimeLog } from '../runtime/common/log';
import { describeError, invalidArgument, isBerthError } from '../runtime/errors';
import type { ExportPlan } from '../runtime/image/image-export';
import type { ImportedImage } from '../runtime/image/image-import';
import type { Writable } from 'node:stream';

export interface AdminOperations {
  importArchive(tar: AsyncIterable<Buffer>): Promise<ImportedImage[]>;
  prepareExport(references: readonly string[]): Promise<ExportPlan>;
  writeExport(plan: ExportPlan, out: Writable): Promise<void>;
}

export function adminSocketPath(stateDir: string): string {
  return join(stateDir, 'admin', 'berth-admin.sock');
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function statusOf(err: unknown): number {
  if (!isBerthError(err)) return 500;
  switch (err.kind) {
    case 'InvalidArgument':
    case 'FailedPrecondition':
      return 400;
    case 'NotFound':
      return 404;
    case 'ResourceExhausted':
      return 413;
    default:
      return 500;
  }
}

export class AdminServer {
  private readonly server: Server;

  private constructor(
    readonly path: string,
    private readonly ops: AdminOperations,
    private readonly log: RuntimeLog,
  ) {
    this.server = createServer((req, res) => void this.handle(req, res));
    // An import of a large archive takes as long as it takes.
    this.server.requestTimeout = 0;
  }

  static async listen(path: string, ops: AdminOperations, log: RuntimeLog): Promise<AdminServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    chmodSync(dirname(path), 0o700);
    rmSync(path, { force: true });
    const admin = new AdminServer(path, ops, log);
    await new Promise<void>((resolve, reject) => {
      admin.server.once('error', reject);
      admin.server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
    return admin;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const route = `${req.method} ${(req.url ?? '').split('?')[0]}`;
    try {
      if (route === 'POST /images/import') {
        const images = await this.ops.importArchive(req);
        answer(res, 200, { images });
        return;
      }
      if (route === 'GET /images/export') {
        const images = new URL(req.url ?? '', 'http://admin').searchParams.getAll('image').filter((i) => i.trim() !== '');
        if (images.length === 0) throw invalidArgument('image: name at least one image (name, digest or id)');
        const plan = await this.ops.prepareExport(images);
        this.log.info({ images: plan.images }, 'exporting images');
        res.writeHead(200, { 'content-type': 'application/x-tar' });
        await this.ops.writeExport(plan, res);
        return;
      }
      req.resume();
      answer(res, 404, { error: `no admin operation ${route}` });
    } catch (err) {
      this.log.warn({ route, err: describeError(err) }, 'admin operation failed');
      req.resume();
      if (!res.headersSent) answer(res, statusOf(err), { error: describeError(err) });
      else res.destroy();
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    rmSync(this.path, { force: true });
  }
}
