// A small HTTPS client for the test harness: JSON requests and watches against the API
// server with the admin client certificate. Test code only. Plain node:https keeps the
// harness independent of the client library the operator uses, so a bug there cannot
// hide in both the code and its test.
import https from 'node:https';
import type { IncomingMessage } from 'node:http';

export interface ClientCredentials {
  server: string;
  ca: string;
  cert: string;
  key: string;
}

export class KubeApiError extends Error {
  readonly status: number;
  readonly body: unknown;
  constructor(method: string, path: string, status: number, body: unknown) {
    const reason = typeof body === 'object' && body !== null && 'message' in body ? String((body as { message: unknown }).message) : JSON.stringify(body);
    super(`${method} ${path}: ${status} ${reason}`);
    this.status = status;
    this.body = body;
  }
}

export type WatchEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'; object: KubeJSON };
// Objects are handled as plain JSON; tests read the fields they need.
// biome-ignore lint/suspicious/noExplicitAny: objects from the API server are read by path in the cluster tests, without a schema
export type KubeJSON = any;

export interface Watch {
  stop(): void;
}

export class KubeClient {
  readonly server: string;
  private readonly agent: https.Agent;

  constructor(creds: ClientCredentials) {
    this.server = creds.server.replace(/\/$/, '');
    this.agent = new https.Agent({ ca: creds.ca, cert: creds.cert, key: creds.key, keepAlive: true, maxSockets: 16 });
  }

  close(): void {
    this.agent.destroy();
  }

  async request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<KubeJSON> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        `${this.server}${path}`,
        {
          method,
          agent: this.agent,
          headers: {
            accept: 'application/json',
            ...(payload !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) } : {}),
          },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              // not JSON (e.g. /healthz): return the text
            }
            if ((res.statusCode ?? 0) >= 400) reject(new KubeApiError(method, path, res.statusCode ?? 0, parsed));
            else resolve(parsed);
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  get(path: string): Promise<KubeJSON> {
    return this.request('GET', path);
  }

  /** GET that answers undefined for 404. */
  async find(path: string): Promise<KubeJSON | undefined> {
    try {
      return await this.request('GET', path);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  create(path: string, obj: unknown): Promise<KubeJSON> {
    return this.request('POST', path, obj);
  }

  mergePatch(path: string, patch: unknown): Promise<KubeJSON> {
    return this.request('PATCH', path, patch, 'application/merge-patch+json');
  }

  strategicPatch(path: string, patch: unknown): Promise<KubeJSON> {
    return this.request('PATCH', path, patch, 'application/strategic-merge-patch+json');
  }

  async delete(path: string, options?: unknown): Promise<KubeJSON | undefined> {
    try {
      return await this.request('DELETE', path, options);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  /**
   * Lists `path` and then watches it from the list's resourceVersion, re-listing when the
   * watch ends or its version expires (410), so a handler sees every object at least once.
   * `onEvent` gets the listed items as ADDED.
   */
  watch(path: string, onEvent: (e: WatchEvent) => void, onError?: (err: Error) => void): Watch {
    let stopped = false;
    let current: IncomingMessage | undefined;
    const sep = path.includes('?') ? '&' : '?';
    const loop = async () => {
      while (!stopped) {
        try {
          const list = await this.get(path);
          for (const item of list.items ?? []) if (!stopped) onEvent({ type: 'ADDED', object: item });
          let rv: string = list.metadata.resourceVersion;
          while (!stopped) {
            const outcome = await this.streamWatch(
              `${path}${sep}watch=1&allowWatchBookmarks=true&resourceVersion=${rv}&timeoutSeconds=60`,
              (e) => {
                if (e.object?.metadata?.resourceVersion) rv = e.object.metadata.resourceVersion;
                if (e.type !== 'BOOKMARK' && e.type !== 'ERROR' && !stopped) onEvent(e);
              },
              (res) => (current = res),
            );
            if (outcome === 'gone') break;
          }
        } catch (err) {
          if (stopped) return;
          onError?.(err as Error);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    void loop();
    return {
      stop: () => {
        stopped = true;
        current?.destroy();
      },
    };
  }

  private streamWatch(path: string, onEvent: (e: WatchEvent) => void, onResponse: (res: IncomingMessage) => void): Promise<'ended' | 'gone'> {
    return new Promise((resolve, reject) => {
      const req = https.request(`${this.server}${path}`, { method: 'GET', agent: this.agent, headers: { accept: 'application/json' } }, (res) => {
        onResponse(res);
        if ((res.statusCode ?? 0) === 410) {
          res.resume();
          resolve('gone');
          return;
        }
        if ((res.statusCode ?? 0) >= 400) {
          res.resume();
          reject(new Error(`watch ${path}: ${res.statusCode}`));
          return;
        }
        let buf = '';
        let gone = false;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            const e = JSON.parse(line) as WatchEvent;
            if (e.type === 'ERROR' && e.object?.code === 410) gone = true;
            onEvent(e);
          }
        });
        res.on('end', () => resolve(gone ? 'gone' : 'ended'));
        res.on('close', () => resolve(gone ? 'gone' : 'ended'));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }
}
