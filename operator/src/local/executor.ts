// The local stand-in for a cluster: it carries out reconcile's actions on this machine.
// A phase pod becomes a child process running the pod's trainer command, with the
// pod's /artifacts mapped to the run directory; the child is reported back as a pod
// object (phase, container start/finish times, exit code, and the result file as the
// termination message), so the very same state machine drives it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { ENV, ProgressEvent } from '../../../contract/src/index.ts';
import { ARTIFACTS_MOUNT, TRAINER_COMMAND } from '../reconcile/children.ts';
import type { Action, KubeObject } from '../reconcile/types.ts';

export interface ExecutorOptions {
  /** runs/<name>: the pods' /artifacts. */
  runDir: string;
  /** The command that replaces the image's `iacnas` entrypoint, e.g. [node, <repo>/bin/iacnas.ts]. */
  command: string[];
  /** Extra environment of every child (IACNAS_BACKEND and the like). */
  env?: Record<string, string | undefined>;
  /** Called with every progress event a child prints on stdout. */
  onProgress?: (event: ProgressEvent) => void;
  /** Called with every line a child prints on stderr (the trainer's human progress). */
  onLog?: (pod: KubeObject, line: string) => void;
  /** Seconds a stopped child gets between SIGTERM and SIGKILL (a pod's grace period). */
  gracePeriodSeconds?: number;
  clock?: () => Date;
}

interface Attempt {
  pod: KubeObject;
  child?: ChildProcess;
  startedAt: Date;
  finishedAt?: Date;
  exitCode?: number;
  signal?: string;
  deleting?: Date;
  resultFile: string;
  logFile: string;
  exited: Promise<void>;
  /** A finished pod of an earlier run, read back from pods.json. */
  restored?: boolean;
}

const LOG_TAIL_BYTES = 2048;

export class LocalExecutor {
  private readonly attempts = new Map<string, Attempt>();
  private readonly opts: ExecutorOptions;
  private readonly clock: () => Date;
  secrets: KubeObject[] = [];
  claims: KubeObject[] = [];
  private wake?: () => void;
  private readonly podsFile: string;

  constructor(opts: ExecutorOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? (() => new Date());
    mkdirSync(join(opts.runDir, 'attempts'), { recursive: true });
    this.podsFile = join(opts.runDir, 'attempts', 'pods.json');
    // Finished attempts of an earlier run stay visible, as finished pods do in a cluster.
    if (existsSync(this.podsFile)) {
      const saved = JSON.parse(readFileSync(this.podsFile, 'utf8')) as KubeObject[];
      for (const pod of saved) {
        this.attempts.set(pod.metadata.name, {
          pod,
          startedAt: this.clock(),
          resultFile: '',
          logFile: '',
          exited: Promise.resolve(),
          restored: true,
        });
      }
    }
    this.stopOrphans();
  }

  /**
   * A run that was killed outright (kill -9) leaves its child running in its own process
   * group. Stop it before anything else, so that two attempts never write the same
   * checkpoints; the state machine then sees its pod as vanished and starts a new attempt.
   */
  private stopOrphans() {
    const dir = join(this.opts.runDir, 'attempts');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.pid'))) {
      const file = join(dir, f);
      const pid = Number(readFileSync(file, 'utf8'));
      rmSync(file, { force: true });
      if (!Number.isInteger(pid) || pid <= 1) continue;
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue; // gone (or no /proc): nothing to stop
      }
      if (!cmdline.includes(this.opts.runDir)) continue; // the pid now belongs to something else
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /** The pods as an API server would list them. */
  pods(): KubeObject[] {
    return [...this.attempts.values()].map((a) => (a.restored ? a.pod : this.podObject(a)));
  }

  /** Whether any child process still runs. */
  get running(): boolean {
    return [...this.attempts.values()].some((a) => a.child && a.finishedAt === undefined);
  }

  async apply(action: Action): Promise<void> {
    if (action.type === 'create') {
      const { object } = action;
      if (object.kind === 'Pod') this.start(object);
      else if (object.kind === 'Secret') this.upsert(this.secrets, object);
      else if (object.kind === 'PersistentVolumeClaim') this.upsert(this.claims, { ...object, status: { phase: 'Bound' } });
    } else if (action.type === 'delete' && action.kind === 'Pod') {
      await this.stop(action.name);
    }
  }

  private upsert(list: KubeObject[], object: KubeObject) {
    if (!list.some((o) => o.metadata.name === object.metadata.name)) list.push(object);
  }

  /** Resolves when a child exits or prints progress, or after ms. */
  waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.wake === done) self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }

  private notify() {
    this.wake?.();
  }

  /** The child's command line: the pod's, with the image entrypoint and volumes mapped to this machine. */
  commandLine(pod: KubeObject, resultFile: string): string[] {
    const container = (pod.spec as { containers: Array<{ command?: string[]; args?: string[] }> }).containers[0];
    const command = container.command ?? TRAINER_COMMAND;
    if (command.join(' ') !== TRAINER_COMMAND.join(' ')) throw new Error(`pod ${pod.metadata.name}: unexpected command ${command.join(' ')}`);
    const args = (container.args ?? []).map((a) => (a === ARTIFACTS_MOUNT ? this.opts.runDir : a));
    return [...this.opts.command, ...args, '--result-file', resultFile];
  }

  private start(pod: KubeObject) {
    const name = pod.metadata.name;
    if (this.attempts.has(name)) return; // AlreadyExists: creating a pod twice never runs it twice
    const resultFile = join(this.opts.runDir, 'attempts', `${name}.result.json`);
    const logFile = join(this.opts.runDir, 'attempts', `${name}.log`);
    writeFileSync(resultFile, '');
    const [cmd, ...args] = this.commandLine(pod, resultFile);
    const podEnv = Object.fromEntries(
      ((pod.spec as { containers: Array<{ env?: Array<{ name: string; value?: string }> }> }).containers[0].env ?? [])
        .filter((e) => e.value !== undefined)
        .map((e) => [e.name, e.value!]),
    );
    const child = spawn(cmd, args, {
      cwd: this.opts.runDir,
      env: { ...process.env, ...this.opts.env, ...podEnv, [ENV.resultFile]: resultFile },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: Ctrl-C in the terminal reaches `iacnas run` only, which
      // then stops the child as a suspend (not as a failure).
      detached: true,
    });
    this.killOnExit();
    const log: WriteStream = createWriteStream(logFile, { flags: 'a' });
    let resolveExit!: () => void;
    const attempt: Attempt = {
      pod,
      child,
      startedAt: this.clock(),
      resultFile,
      logFile,
      exited: new Promise((r) => (resolveExit = r)),
    };
    this.attempts.set(name, attempt);
    const pidFile = join(this.opts.runDir, 'attempts', `${name}.pid`);
    if (child.pid) writeFileSync(pidFile, String(child.pid));

    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        this.onStdoutLine(line);
      }
    });
    let logBuffered = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      log.write(chunk);
      logBuffered += chunk.toString('utf8');
      for (let nl = logBuffered.indexOf('\n'); nl >= 0; nl = logBuffered.indexOf('\n')) {
        this.opts.onLog?.(pod, logBuffered.slice(0, nl));
        logBuffered = logBuffered.slice(nl + 1);
      }
    });
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (attempt.finishedAt) return;
      attempt.finishedAt = this.clock();
      attempt.exitCode = code ?? (signal === 'SIGKILL' ? 137 : 143);
      attempt.signal = signal ?? undefined;
      rmSync(pidFile, { force: true });
      log.end(() => {
        this.persist();
        resolveExit();
        this.notify();
      });
    };
    child.on('error', (e) => {
      log.write(`iacnas run: cannot start ${cmd}: ${e.message}\n`);
      finish(127, null);
    });
    child.on('close', finish);
  }

  private onStdoutLine(line: string) {
    if (!line.startsWith('{')) return;
    try {
      const parsed = ProgressEvent.safeParse(JSON.parse(line));
      if (parsed.success) {
        this.opts.onProgress?.(parsed.data);
        this.notify();
      }
    } catch {
      // not an event: ignore, as the operator ignores malformed progress
    }
  }

  /** Deletes a pod: SIGTERM, SIGKILL after the grace period; resolves once the child is gone. */
  async stop(name: string): Promise<void> {
    const a = this.attempts.get(name);
    if (!a) return;
    if (a.child && a.finishedAt === undefined) {
      a.deleting ??= this.clock();
      a.child.kill('SIGTERM');
      const grace = (this.opts.gracePeriodSeconds ?? 10) * 1000;
      const timer = setTimeout(() => a.child?.kill('SIGKILL'), grace);
      await a.exited;
      clearTimeout(timer);
    }
    // A deleted pod is gone from the API; its record lives on in the search's status.
    this.attempts.delete(name);
    this.persist();
  }

  private exitHook?: () => void;

  /** Children in their own process group must not outlive `iacnas run`, however it ends. */
  private killOnExit() {
    if (this.exitHook) return;
    this.exitHook = () => {
      for (const a of this.attempts.values()) if (a.child && a.finishedAt === undefined) a.child.kill('SIGKILL');
    };
    process.on('exit', this.exitHook);
  }

  /** Stops every child (at the end of a run, or on an error). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.attempts.values()].filter((a) => a.child && !a.finishedAt).map((a) => this.stop(a.pod.metadata.name)));
    if (this.exitHook) process.off('exit', this.exitHook);
    this.exitHook = undefined;
  }

  private terminationMessage(a: Attempt): string | undefined {
    const result = existsSync(a.resultFile) ? readFileSync(a.resultFile, 'utf8').trim() : '';
    if (result) return result;
    if (a.exitCode === 0 || !existsSync(a.logFile)) return undefined;
    // FallbackToLogsOnError: the tail of the log.
    const log = readFileSync(a.logFile, 'utf8');
    return log.slice(-LOG_TAIL_BYTES).trim() || undefined;
  }

  private podObject(a: Attempt): KubeObject {
    const metadata = { ...a.pod.metadata, creationTimestamp: a.startedAt.toISOString() };
    if (a.deleting) Object.assign(metadata, { deletionTimestamp: a.deleting.toISOString() });
    const status: Record<string, unknown> = {};
    if (a.finishedAt === undefined) {
      status.phase = 'Running';
      status.containerStatuses = [{ name: 'trainer', state: { running: { startedAt: a.startedAt.toISOString() } } }];
    } else {
      const ok = a.exitCode === 0;
      const message = this.terminationMessage(a);
      status.phase = ok ? 'Succeeded' : 'Failed';
      status.containerStatuses = [
        {
          name: 'trainer',
          state: {
            terminated: {
              exitCode: a.exitCode,
              reason: ok ? 'Completed' : 'Error',
              startedAt: a.startedAt.toISOString(),
              finishedAt: a.finishedAt.toISOString(),
              ...(message && { message }),
            },
          },
        },
      ];
    }
    return { ...a.pod, metadata, status };
  }

  /** Saves the finished pods, so that a later `iacnas run` sees them as a cluster would. */
  private persist() {
    const finished = [...this.attempts.values()]
      .filter((a) => a.restored || (a.finishedAt && !a.deleting))
      .map((a) => (a.restored ? a.pod : this.podObject(a)));
    writeFileSync(this.podsFile, JSON.stringify(finished, null, 1));
  }

  /** Log file of a pod (its stderr). */
  logFile(name: string): string {
    return join(this.opts.runDir, 'attempts', `${name}.log`);
  }
}
