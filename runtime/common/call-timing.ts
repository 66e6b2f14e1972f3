// One way to time a call to something outside berthd (an OCI runtime, a CNI
// plugin, a registry) and report it with its outcome, for metrics.
import { elapsedSeconds, monotonicMark } from './clock';

export type CallOutcome = 'ok' | 'error';
export type CallRecorder = (seconds: number, outcome: CallOutcome) => void;

/** Runs `work`, then tells `record` how long it took and whether it threw. */
export async function timeCall<T>(work: () => Promise<T>, record: CallRecorder | undefined): Promise<T> {
  if (!record) return work();
  const started = monotonicMark();
  let outcome: CallOutcome = 'error';
  try {
    const result = await work();
    outcome = 'ok';
    return result;
  } finally {
    record(elapsedSeconds(started), outcome);
  }
}
