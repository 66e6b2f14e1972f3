// StopPodSandbox and RemovePodSandbox once the pod is found and locked: stop
// ends the pod's containers, detaches its network and ends its PID holder;
// remove also removes the containers and undoes everything else the journal
// holds. Both replay the journal, so a call that failed before is retried.
import { internal } from '../errors';
import { STOP_KINDS } from './pod-resource-journal';
import type { SandboxParts } from './pod-sandboxes';
import type { SandboxRecord } from './sandbox-records';

export async function stopPod(parts: SandboxParts, record: SandboxRecord): Promise<void> {
  await parts.containers.stopPodContainers(record.row.id, 0);
  const failures = await parts.journal.undo(record, STOP_KINDS);
  if (record.row.phase === 'ready') {
    parts.records.update(record, { phase: 'stopped' });
    parts.publish('CONTAINER_STOPPED_EVENT', record.row.id);
  }
  if (failures.length > 0) {
    parts.records.update(record, { last_error: failures.join('; ') });
    throw internal(`stopping pod sandbox ${record.row.id}: ${failures.join('; ')}`);
  }
}

export async function removePod(parts: SandboxParts, record: SandboxRecord): Promise<void> {
  if (record.row.phase === 'ready') await stopPod(parts, record);
  await parts.containers.removePodContainers(record.row.id);
  await parts.journal.undoAll(record);
  parts.records.forget(record.row.id);
  parts.publish('CONTAINER_DELETED_EVENT', record.row.id);
  parts.log.info({ pod: record.row.id }, 'pod sandbox removed');
}
