// loopback-only.mjs: a Node preload (`node --import`) that keeps a peer gateway on one address.
// The Portkey gateway calls server.listen(port) with no host, i.e. on every interface; the benchmarks
// must only ever listen on loopback, so a listen() without a host gets BENCH_LISTEN_HOST (127.0.0.1).
import net from 'node:net';

const host = process.env.BENCH_LISTEN_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function patchedListen(...args) {
  if (args.length > 0 && typeof args[0] === 'object' && args[0] !== null && !Array.isArray(args[0])) {
    if (args[0].port !== undefined && !args[0].host && !args[0].path) args[0] = { ...args[0], host };
  } else if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== 'string') {
      if (args.length >= 2 && (args[1] === undefined || args[1] === null)) args[1] = host;
      else args.splice(1, 0, host);
    }
  }
  return listen.apply(this, args);
};
