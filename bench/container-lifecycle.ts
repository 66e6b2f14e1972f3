// Container lifecycle, berth vs containerd, in one pod per runtime:
// CreateContainer, StartContainer, StopContainer, RemoveContainer of a
// busybox `sleep 3600`, runtimes alternating. "CreateContainer+StartContainer"
// is the sum per container, the figure the issue sets a target on:
// berth's p50 <= 0.7x containerd's.
import type { BenchRuntime } from './support/bench-env';
import { intFromEnv, runMain, runScenario } from './support/bench-env';
import { podConfig, sleepContainerConfig } from './support/pod-config';
import { SampleBook } from './support/samples';

const iterations = intFromEnv('BENCH_CONTAINER_ITERATIONS', 30, 1);
const warmup = intFromEnv('BENCH_WARMUP', 3, 0);
const stopTimeout = intFromEnv('BENCH_STOP_TIMEOUT', 0, 0);

runMain(async () => {
  const book = new SampleBook();
  const scratch = new SampleBook();
  await runScenario(
    {
      scenario: 'container-lifecycle',
      parameters: { iterations, warmup, stopTimeoutSeconds: stopTimeout, command: 'sleep 3600' },
      targets: [{ operation: 'CreateContainer+StartContainer', maxRatio: 0.7 }],
      run: async (env) => {
        const pods = new Map<BenchRuntime, { id: string; config: ReturnType<typeof podConfig> }>();
        try {
          for (const rt of env.runtimes) {
            await rt.client.call('PullImage', { image: { image: env.busybox.reference } });
            const config = podConfig(rt, 'bench-containers');
            const { pod_sandbox_id: id } = await rt.client.call('RunPodSandbox', { config, runtime_handler: '' });
            pods.set(rt, { id, config });
          }
          for (let i = 0; i < warmup + iterations; i++) {
            const into = i < warmup ? scratch : book;
            for (const rt of env.order(i)) {
              const pod = pods.get(rt)!;
              const started = process.hrtime.bigint();
              const { container_id: id } = await into.time('CreateContainer', rt.name, () =>
                rt.client.call('CreateContainer', {
                  pod_sandbox_id: pod.id,
                  config: sleepContainerConfig(`sleeper-${i}`, env.busybox.reference),
                  sandbox_config: pod.config,
                }),
              );
              try {
                await into.time('StartContainer', rt.name, () => rt.client.call('StartContainer', { container_id: id }));
                into.record('CreateContainer+StartContainer', rt.name, Number(process.hrtime.bigint() - started) / 1e6);
                const status = await into.time('ContainerStatus', rt.name, () => rt.client.call('ContainerStatus', { container_id: id, verbose: false }));
                if (status.status?.state !== 'CONTAINER_RUNNING') throw new Error(`${rt.name}: container ${id} is ${status.status?.state}, expected CONTAINER_RUNNING`);
                await into.time('StopContainer', rt.name, () => rt.client.call('StopContainer', { container_id: id, timeout: String(stopTimeout) }));
                await into.time('RemoveContainer', rt.name, () => rt.client.call('RemoveContainer', { container_id: id }));
              } catch (err) {
                await rt.client.call('StopContainer', { container_id: id, timeout: '0' }).catch(() => undefined);
                await rt.client.call('RemoveContainer', { container_id: id }).catch(() => undefined);
                throw err;
              }
            }
          }
        } finally {
          for (const [rt, pod] of pods) {
            await rt.client.call('StopPodSandbox', { pod_sandbox_id: pod.id }).catch(() => undefined);
            await rt.client.call('RemovePodSandbox', { pod_sandbox_id: pod.id }).catch(() => undefined);
          }
        }
      },
    },
    book,
  );
});
