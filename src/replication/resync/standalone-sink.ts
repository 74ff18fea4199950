import type { ResyncExtent, ResyncSink } from './sink.js';
import type { RemoteTarget } from './target-client.js';

/**
 * The sink of a resync with nothing else writing to the disks (reprotect of a powered-off
 * machine, the benchmark, the tests): differing blocks go to the target over the compare
 * connection itself, and a flush is an fsync on the target.
 */
export class StandaloneSink implements ResyncSink {
  constructor(private readonly target: RemoteTarget) {}

  write(extent: ResyncExtent): Promise<void> {
    return extent.data ? this.target.write(extent.offset, extent.data) : this.target.zero(extent.offset, extent.length);
  }

  flush(): Promise<void> {
    return this.target.flush();
  }
}
