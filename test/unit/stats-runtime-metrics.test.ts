import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { RuntimeMetrics } from '../../runtime/stats/runtime-metrics';
import type { ContainerLookup, ContainerView } from '../../runtime/container/container-types';
import type { PodSandboxView, SandboxLookup } from '../../runtime/sandbox/sandbox-types';

function lookupOf<T extends { id: string }>(items: T[]): { get(id: string): T | undefined; list(): T[] } {
  return { get: (id) => items.find((i) => i.id === id), list: () => items };
}

test('pods and containers are counted by state at scrape time', async () => {
  const registry = new Registry();
  const metrics = new RuntimeMetrics(registry);
  const pods = [{ id: 'p1', state: 'SANDBOX_READY' }, { id: 'p2', state: 'SANDBOX_READY' }, { id: 'p3', state: 'SANDBOX_NOTREADY' }] as PodSandboxView[];
  const containers: ContainerView[] = [{ id: 'c1', state: 'CONTAINER_RUNNING' }] as ContainerView[];
  metrics.setLookups({ sandboxes: lookupOf(pods) as SandboxLookup, containers: lookupOf(containers) as ContainerLookup });
  let text = await registry.metrics();
  assert.match(text, /berth_pod_sandboxes\{state="SANDBOX_READY"\} 2/);
  assert.match(text, /berth_pod_sandboxes\{state="SANDBOX_NOTREADY"\} 1/);
  assert.match(text, /berth_containers\{state="CONTAINER_RUNNING"\} 1/);
  containers.push({ id: 'c2', state: 'CONTAINER_EXITED' } as ContainerView);
  containers[0] = { id: 'c1', state: 'CONTAINER_EXITED' } as ContainerView;
  text = await registry.metrics();
  assert.match(text, /berth_containers\{state="CONTAINER_EXITED"\} 2/);
  assert.match(text, /berth_containers\{state="CONTAINER_RUNNING"\} 0/);
});

test('OCI and CNI calls land in latency histograms, failures labelled as errors', async () => {
  const registry = new Registry();
  const metrics = new RuntimeMetrics(registry);
  metrics.observeOciCall('create', 0.02, 'runc');
  await assert.rejects(metrics.timeCniCall('ADD', async () => { throw new Error('plugin failed'); }), /plugin failed/);
  assert.equal(await metrics.timeOciCall('start', 'runc', async () => 42), 42);
  metrics.countRecovery('container', 'recovered', 3);
  metrics.observeImagePull(1.5, 1000);
  const text = await registry.metrics();
  assert.match(text, /berth_oci_runtime_call_duration_seconds_count\{operation="create",runtime="runc",outcome="ok"\} 1/);
  assert.match(text, /berth_oci_runtime_call_duration_seconds_count\{operation="start",runtime="runc",outcome="ok"\} 1/);
  assert.match(text, /berth_cni_call_duration_seconds_count\{operation="ADD",outcome="error"\} 1/);
  assert.match(text, /berth_restart_recoveries_total\{kind="container",outcome="recovered"\} 3/);
  assert.match(text, /berth_image_pull_bytes_total 1000/);
});
