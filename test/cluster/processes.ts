// Child processes of the harness, each in its own process group so that stopping one
// also stops whatever it started (a shell, a trainer's workers). Every live group is
// killed when the test process exits, also after a failure; and a reaper process kills
// them when the test process dies without running exit handlers (SIGTERM, SIGKILL, a
// crashed worker), so no process outlives the test run.
import { spawn } from 'node:child_process';
import { openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  /** Whether the process has exited. */
  readonly done: () => boolean;
  /** Signals the whole process group. */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

const liveGroups = new Set<number>();
let exitHookInstalled = false;

const groupsFile = path.join(os.tmpdir(), `iacnas-harness-${process.pid}.pgids`);

function writeGroups(): void {
  writeFileSync(groupsFile, `${[...liveGroups].join('\n')}\n`);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  writeGroups();
  process.on('exit', () => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(groupsFile, { force: true });
  });
  // The reaper: a shell in its own group that outlives this process by at most a second
  // and then kills every group still listed.
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; [ -f "$1" ] && for g in $(cat "$1"); do kill -9 -- -"$g" 2>/dev/null; done; rm -f "$1"`;
  const reaper = spawn('sh', ['-c', script, 'iacnas-harness-reaper', groupsFile], { detached: true, stdio: 'ignore' });
  reaper.unref();
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr are appended here. */
  logFile: string;
}

export function spawnGroup(name: string, command: string, args: string[], opts: SpawnOptions): ManagedProcess {
  installExitHook();
  const fd = openSync(opts.logFile, 'a');
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const pid = child.pid;
  liveGroups.add(pid);
  writeGroups();
  let finished = false;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.on('exit', (code, signal) => {
      finished = true;
      // The leader is gone; take down anything it left in its group.
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // group already empty
      }
      liveGroups.delete(pid);
      writeGroups();
      resolve({ code, signal });
    });
    child.on('error', () => {
      finished = true;
      liveGroups.delete(pid);
      resolve({ code: 127, signal: null });
    });
  });
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  };
  return {
    name,
    pid,
    exited,
    done: () => finished,
    signal: signalGroup,
    async stop(graceMs = 5000) {
      if (finished) return exited;
      signalGroup('SIGTERM');
      const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
      const status = await exited;
      clearTimeout(timer);
      return status;
    },
  };
}
