// Pod sandbox lifecycle, berth vs containerd: RunPodSandbox, PodSandboxStatus,
// StopPodSandbox, RemovePodSandbox, one pod at a time, runtimes alternating;
// Version too, as the per-call floor of each daemon.
// Target (the issue): berth's RunPodSandbox p50 <= 0.5x containerd's.
import { intFromEnv, runMain, runScenario } from './support/bench-env';
import { podConfig } from './support/pod-config';
import { SampleBook } from './support/samples';

const iterations = intFromEnv('BENCH_POD_ITERATIONS', 30, 1);
const warmup = intFromEnv('BENCH_WARMUP', 3, 0);

runMain(async () => {
  const book = new SampleBook();
  const scratch = new SampleBook();
  await runScenario(
    {
      scenario: 'pod-lifecycle',
      parameters: { iterations, warmup },
      targets: [{ operation: 'RunPodSandbox', maxRatio: 0.5 }],
      run: async (env) => {
        for (let i = 0; i < warmup + iterations; i++) {
          const into = i < warmup ? scratch : book;
          for (const rt of env.order(i)) {
            // The floor of any call: gRPC over the unix socket plus the daemon's dispatch.
            await into.time('Version (RPC floor)', rt.name, () => rt.client.call('Version', { version: '0.1.0' }));
            const config = podConfig(rt, `bench-pod-${i}`);
            const { pod_sandbox_id: id } = await into.time('RunPodSandbox', rt.name, () => rt.client.call('RunPodSandbox', { config, runtime_handler: '' }));
            try {
              const status = await into.time('PodSandboxStatus', rt.name, () => rt.client.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: false }));
              if (status.status?.state !== 'SANDBOX_READY') throw new Error(`${rt.name}: pod ${id} is ${status.status?.state}, expected SANDBOX_READY`);
              await into.time('StopPodSandbox', rt.name, () => rt.client.call('StopPodSandbox', { pod_sandbox_id: id }));
              await into.time('RemovePodSandbox', rt.name, () => rt.client.call('RemovePodSandbox', { pod_sandbox_id: id }));
            } catch (err) {
              // Leave nothing behind even when a step fails; the failure still ends the run.
              await rt.client.call('StopPodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
              await rt.client.call('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
              throw err;
            }
          }
        }
      },
    },
    book,
  );
});
