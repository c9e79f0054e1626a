/**
 * The bare Node daemon: length-prefixed MessagePack over a Unix socket, no storage.
 * `node bench/echo-server.js SOCKET`. Answers `hello` with a valid hello result so the real
 * IpcClient connects, `get` with `{ id, result: <a 100-byte bin> }` (the bytes toondbd's reply
 * to the bench's GET carries: the value sizes match, not its contents) and every other request
 * `{ id, result: null }`: "toondb client against echo" is what a straightforward Node daemon
 * costs with this client and protocol (msgpackr per message, no storage). toondb's daemon writes its hot frames by hand
 * (protocol/simple-frames.ts), so it can beat this peer. Replies to one
 * read leave in one write, as any reasonable daemon would do. Exits when its parent's IPC
 * channel closes.
 */
import { createServer } from 'node:net';
import { Packr } from 'msgpackr';

/** The hello result, in the protocol version the client asked for (as toondbd answers). */
const hello = (protocol) => ({ protocol, server: 'echo', connectionId: 1, limits: {} });
/** What a GET gets: as many bytes as the bench's values (workloads.js VALUE_BYTES). */
const GOT = Buffer.alloc(100, 'v');
const resultOf = (op, protocol) => (op === 'hello' ? hello(protocol) : op === 'get' ? GOT : null);
createServer((socket) => {
  const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' });
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    const out = [];
    let at = 0;
    while (pending.length - at >= 4 && pending.length - at - 4 >= pending.readUInt32BE(at)) {
      const end = at + 4 + pending.readUInt32BE(at);
      const { id, op, protocol } = packr.unpack(pending.subarray(at + 4, end));
      const body = packr.pack({ id, result: resultOf(op, protocol) });
      const head = Buffer.allocUnsafe(4);
      head.writeUInt32BE(body.length);
      out.push(head, body);
      at = end;
    }
    pending = pending.subarray(at);
    if (out.length) socket.write(Buffer.concat(out));
  });
  socket.on('error', () => socket.destroy());
}).listen(process.argv[2], () => process.send?.('ready'));

// Forked by the bench: die with it instead of lingering as an orphan holding its socket.
process.on('disconnect', () => process.exit(0));
