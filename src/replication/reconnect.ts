import type { TLSSocket } from 'node:tls';
import { errorMessage } from './errors.js';
import type { Frame } from './transport.js';

export interface ReconnectOptions {
  connect(): Promise<{ socket: TLSSocket; frames: AsyncGenerator<Frame> }>;
  /** Runs one connected session; returns (or throws) when the connection is over. */
  session(socket: TLSSocket, frames: AsyncGenerator<Frame>): Promise<void>;
  /** After every session or failed attempt: put back what was in flight. */
  onDown(): void;
  onError(message: string): void;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * Keeps one outgoing data connection up for as long as it runs: connect, run a session, and on
 * any failure wait (exponential backoff with jitter) and connect again.
 */
export class Reconnector {
  connected = false;
  reconnects = 0;
  private running = false;
  private socket: TLSSocket | undefined;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly o: ReconnectOptions) {}

  get isRunning(): boolean {
    return this.running;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    this.socket?.destroy();
    await this.loop;
  }

  private async run(): Promise<void> {
    const min = this.o.minBackoffMs ?? 100;
    let backoff = min;
    while (this.running) {
      try {
        const { socket, frames } = await this.o.connect();
        this.socket = socket;
        this.connected = true;
        backoff = min;
        await this.o.session(socket, frames);
      } catch (err) {
        this.o.onError(errorMessage(err));
      } finally {
        this.connected = false;
        this.socket?.destroy();
        this.socket = undefined;
        this.o.onDown();
      }
      if (!this.running) break;
      this.reconnects++;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff * (0.5 + Math.random() / 2));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      backoff = Math.min(backoff * 2, this.o.maxBackoffMs ?? 5000);
    }
  }
}
