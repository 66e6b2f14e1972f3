// The Kubernetes Status objects the remotecommand protocol (v4 and later)
// reports on its error stream; client-go reads the exit code from
// details.causes[reason=ExitCode].message.
export interface KubeStatus {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes: { reason?: string; message: string }[] };
  code?: number;
}

export function successStatus(): KubeStatus {
  return { metadata: {}, status: 'Success' };
}

export function nonZeroExitStatus(exitCode: number, what: string): KubeStatus {
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: ${what}, exit code ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  };
}

export function internalErrorStatus(message: string): KubeStatus {
  return {
    metadata: {},
    status: 'Failure',
    message: `Internal error occurred: ${message}`,
    reason: 'InternalError',
    details: { causes: [{ message }] },
    code: 500,
  };
}

/**
 * What the error stream carries: v4/v5 a JSON Status; older versions only the
 * message of a failure as plain text, nothing on success.
 */
export function encodeStatus(status: KubeStatus, json: boolean): Buffer {
  if (json) return Buffer.from(JSON.stringify(status));
  return status.status === 'Success' ? Buffer.alloc(0) : Buffer.from(status.message ?? 'error');
}
