"""RUN: a process in the runtime, on the stage's layers, with the step's mounts.

The key holds argv, env (proxy variables only when an ARG declared them), user, cwd, network,
security, the platform it runs for (a RUN for arm64 is never a hit of the same RUN for amd64) and the mounts (a bind mount's content as an inputs checksum; a secret's id, never its
value). The process runs as BuildKit runs it: hostname `buildkitsandbox`, `--security=insecure`
with every capability. Its output streams to progress; a non-zero exit is a located StepError
carrying the output's last lines. The build's one use of the runtime's executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from builder.build.job import StepOutput
from builder.build.ops.inputs import content_key
from builder.build.ops.mounts import mount_all, release
from builder.build.ops.rootfs import lower_dirs
from builder.cache.keys import CacheKey

if TYPE_CHECKING:
    from builder.build.graph import Exec
    from builder.build.job import BuildJob, Step
    from builder.build.ops.mounts import Held
    from builder.build.ops.workspace import Workspace
    from runtime.spec import ExitStatus, Mount

OUTPUT_TAIL_LINES = 12


class ExecOp:
    """RUN in the runtime."""

    kind = "RUN"

    def __init__(self, op: Exec) -> None:
        self.op = op

    def key(self, job: BuildJob, step: Step) -> CacheKey:
        from builder.build.convert import PROXY_ARGS

        op = self.op
        mounts = [m.key_part() for m in op.mounts]
        for part, m in zip(mounts, op.mounts):
            if m.type == "bind":
                part["content"] = content_key(job, step, m.source_stage, m.source_image, [m.source or "/"], ())
        env = [[k, v] for k, v in op.env if k not in PROXY_ARGS or (k, v) in op.build_args]
        kind: dict[str, object] = {"kind": "RUN", "argv": list(op.argv), "security": op.security}
        if job.options.extra_hosts:  # part of BuildKit's ExecOp meta (its digest) when given, as shm size
            kind["extra_hosts"] = [list(h) for h in job.options.extra_hosts]
        if job.options.shm_size:
            kind["shm_size"] = job.options.shm_size
        return CacheKey.make(parent=step.parent.digest, op=kind,
                             env=env, user=op.user, cwd=op.cwd, network=job.network(op.network),
                             mounts=mounts or None, platform=step.stage.platform or None)

    def run(self, job: BuildJob, step: Step, ws: Workspace) -> StepOutput:
        op = self.op
        env = list(op.env)
        held: list[Held] = []  # flock fds of cache mounts and ssh agent proxies, released when the step ends
        try:
            mounts = mount_all(job, step, op.mounts, ws, env, held)
            ssh = [m for m in op.mounts if m.type == "ssh"]
            if ssh and not any(k == "SSH_AUTH_SOCK" for k, _ in env):  # as BuildKit: the first ssh mount
                env.append(("SSH_AUTH_SOCK", ssh[0].target))
            status, tail, total = self._run_process(job, step, ws, env, mounts)
        finally:
            release(held)
        if status.code != 0:
            text = b"".join(tail).decode(errors="replace").splitlines()[-OUTPUT_TAIL_LINES:]
            raise step.error(f"process \"{' '.join(op.argv)}\" did not complete successfully: exit code: "
                             f"{status.code}", output_tail="\n".join(text))
        return StepOutput(ws.commit(), status.cpu_seconds, status.memory_peak_bytes, total)

    def _run_process(self, job: BuildJob, step: Step, ws: Workspace, env: list[tuple[str, str]],
                     mounts: list[Mount]) -> tuple[ExitStatus, list[bytes], int]:
        """Run the process to its end: its status, the tail of its output, and the output's size."""
        from builder.build.emulation import EMULATED_NICE, native
        from runtime.executor import LinuxExecutor
        from runtime.spec import ALL_CAPABILITIES, NetworkMode, ProcessSpec, RootfsSpec

        op = self.op
        lower = tuple(lower_dirs(job, step.layers, step.sid))
        workdir = ws.dir("work")
        workdir.mkdir()
        scaffold = ws.dir("scaffold")
        rootfs = RootfsSpec(lower, ws.upper, workdir, scaffold=scaffold)
        ws.overlay_lower = [*lower, scaffold]  # the scaffold too: a copy-up takes a directory from it
        insecure = op.security == "insecure"  # BuildKit's insecure mode: every capability, /proc and /sys open
        # BuildKit's fixed hostname: a RUN that records it (in a file, a log) gives the same layer every
        # time; its sandbox's /etc/hosts names it (`hostname -f` works), no HOSTNAME, the image's /etc/hostname
        process = ProcessSpec(tuple(op.argv), tuple(env), op.user, op.cwd, hostname="buildkitsandbox",
                              capabilities=ALL_CAPABILITIES if insecure else None, privileged=insecure,
                              seccomp="unconfined" if insecure else "", sandbox=True,
                              extra_hosts=job.options.extra_hosts, shm_size=job.options.shm_size,
                              nice=0 if native(step.stage.platform) else EMULATED_NICE)
        network = {"none": NetworkMode.NONE, "host": NetworkMode.HOST}.get(job.network(op.network),
                                                                          NetworkMode.DEFAULT)
        tail: list[bytes] = []
        total = [0]

        def on_output(data: bytes) -> None:
            total[0] += len(data)
            tail.append(data)
            if len(tail) > 200:
                del tail[:100]
            job.progress.output(step.sid, data)

        pids: list[int] = []

        def on_start(pid: int) -> None:
            pids.append(pid)
            job.running.started(pid)

        try:
            status = LinuxExecutor().run(process, rootfs, tuple(mounts), network, stdout=on_output,
                                         stderr=on_output, on_start=on_start)
        finally:
            job.running.ended(pids)
        return status, tail, total[0]
