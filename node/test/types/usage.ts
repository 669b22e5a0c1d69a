// A typed use of every export, checked by `tsc --noEmit -p test/types` (node/run_tests.sh). The lines
// marked as expected errors make misuse a test failure too: if one of them compiles, tsc reports it.
import { Channel, DisconnectBehavior, EshmError, ErrorCode, ReadAsyncStats, Role, Stats, libraryVersion, readAsyncStats } from 'eshm';

export async function example(): Promise<void> {
  const version: string = libraryVersion();
  const master = Channel.open('typed_example', {
    role: Role.MASTER,
    disconnectBehavior: DisconnectBehavior.ON_TIMEOUT,
    m2sCapacity: 1 << 20,
    autoCleanup: true,
    libraryPath: process.env.ESHM_LIBESHM,
  });
  const role: 0 | 1 = master.role;
  master.write('text', { timeoutMs: 1000 });
  master.write(Buffer.from([1, 2, 3]));
  master.write(new Uint8Array(8));
  const sent: boolean = master.tryWrite(new Float64Array(2));
  const message: Buffer = master.read({ timeoutMs: -1 });
  const maybe: Buffer | null = master.tryRead();
  const size: number | null = master.nextMessageSize();
  const later: Buffer = await master.readAsync({ timeoutMs: 500 });
  const waiting: ReadAsyncStats = readAsyncStats();
  const inFlight: number = waiting.asyncCallsInFlight + waiting.maxAsyncCallsInFlight + waiting.channelsWaiting;
  const stats: Stats = master.stats();
  const created: bigint = stats.segmentEpochNs;
  const alive: boolean = master.isRemoteAlive() && stats.slaveAlive;
  try {
    master.read({ timeoutMs: 0 });
  } catch (err) {
    if (err instanceof EshmError && err.code === ErrorCode.TIMEOUT) {
      const name: string = err.codeName;
      void name;
    }
  }
  {
    using scoped = Channel.open('typed_scoped');
    scoped.flush();
  }
  master.close();
  void [version, role, sent, message, maybe, size, later, inFlight, created, alive];

  // @ts-expect-error: roles are the Role values
  Channel.open('x', { role: 'master' });
  // @ts-expect-error: options are checked by name
  Channel.open('x', { bufferSize: 10 });
  // @ts-expect-error: numbers are not messages
  master.write(42);
  // @ts-expect-error: reads return Buffers
  const wrong: string = master.read();
  // @ts-expect-error: channels come from Channel.open()
  new Channel();
  void wrong;
}
