// UpdateContainerResources: new cgroup limits applied by the OCI runtime to a
// created or running container, and kept in its record and spec so that
// ContainerStatus reports them.
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import { failedPrecondition } from '../errors';
import type { ContainerContext } from './container-context';
import { specOf, stateOf } from './container-view';
import type { OciResources } from './oci-spec-types';

/** Applies `oci` (made from `resources`) to container `id` (a full id; the caller holds its lock). */
export async function updateContainerResources(ctx: ContainerContext, id: string, resources: LinuxContainerResources__Output, oci: OciResources): Promise<void> {
  const record = ctx.exits.refresh(ctx.records.require(id));
  if (record.phase !== 'running' && record.phase !== 'created') {
    throw failedPrecondition(`container ${id} is ${stateOf(record)}; only created or running containers can be updated`);
  }
  await ctx.runtimes.require(record.runtimeHandler).update(id, oci);
  const previous = record.resourcesJson ? (JSON.parse(record.resourcesJson) as LinuxContainerResources__Output | null) : null;
  record.resourcesJson = JSON.stringify({ ...(previous ?? {}), ...resources });
  const spec = specOf(record);
  if (spec) {
    spec.linux.resources = { ...spec.linux.resources, ...oci, devices: spec.linux.resources.devices };
    record.specJson = JSON.stringify(spec);
  }
  ctx.records.save(record);
}
