// What ExecSync answers must fit one gRPC message: each stream is already
// capped (container.exec_sync_max_output_bytes), but both at their cap plus
// the message's framing exceed a send limit of the same size, and the call
// would fail with RESOURCE_EXHAUSTED instead of answering. The output is cut
// to fit, stderr keeping at least half of the room when it needs it.

/** Room left for framing and the exit code in the ExecSync response. */
export const EXEC_RESPONSE_FRAMING_BYTES = 4096;

export interface FittedExecOutput {
  stdout: Buffer;
  stderr: Buffer;
  /** Bytes cut from each stream (0 when it fit). */
  cut: { stdout: number; stderr: number };
}

/** stdout and stderr cut so that both together fit in `sendLimit` minus the framing. */
export function fitExecOutput(stdout: Buffer, stderr: Buffer, sendLimit: number): FittedExecOutput {
  const room = Math.max(0, sendLimit - EXEC_RESPONSE_FRAMING_BYTES);
  if (stdout.length + stderr.length <= room) return { stdout, stderr, cut: { stdout: 0, stderr: 0 } };
  const stderrKeep = Math.min(stderr.length, Math.max(room - stdout.length, Math.floor(room / 2)));
  const stdoutKeep = Math.min(stdout.length, room - stderrKeep);
  return {
    stdout: stdout.subarray(0, stdoutKeep),
    stderr: stderr.subarray(0, stderrKeep),
    cut: { stdout: stdout.length - stdoutKeep, stderr: stderr.length - stderrKeep },
  };
}
