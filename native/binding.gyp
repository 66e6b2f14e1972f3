{
  "targets": [
    {
      "target_name": "berth_native",
      "sources": ["src/addon.cc", "src/host.cc", "src/mount.cc", "src/overlay.cc", "src/fs_extras.cc", "src/namespaces.cc", "src/streaming_fds.cc", "src/netns_read.cc", "src/monitor_spawn.cc", "src/userns.cc", "src/prepared_mounts.cc", "src/rootfs_open.cc", "src/sd_notify.cc", "src/pid_namespace.cc", "src/log_open.cc", "src/pid_watch.cc", "src/small_files.cc", "src/sealed_copy.cc", "src/cgroup_signal.cc", "src/memory_trim.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "berth-exec",
      "type": "executable",
      "sources": ["exec/exec.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "ldflags": ["-static"]
    },
    {
      "target_name": "berth-pause",
      "type": "executable",
      "sources": ["pause/pause.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "ldflags": ["-static"]
    }
  ]
}
