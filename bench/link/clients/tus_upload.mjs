#!/usr/bin/env node
// tus-js-client (Node) uploading one file to a tus server, in the client's network namespace. Node's http module
// knows no HTTP_PROXY: the harness hands tus-js-client an http.Agent (through its documented `httpStack` option)
// whose connections are tunnels opened with CONNECT through the link proxy. tus-js-client itself is unchanged.
//
//   node tus_upload.mjs --endpoint URL --file PATH --proxy http://HOST:PORT [--parallel N] [--chunk-bytes N]
//                       [--header 'Name: value']...
//
// Defaults are tus-js-client's: the whole file in one PATCH (chunkSize Infinity), one upload at a time. Retries
// stay on (tus-js-client's default delays), so a cut link is recovered from as a user's client would. Prints one
// JSON line: {"url", "id", "started_monotonic", "seconds"} (when the upload began on CLOCK_MONOTONIC).
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tus from 'tus-js-client';

const { values } = parseArgs({
  options: {
    endpoint: { type: 'string' },
    file: { type: 'string' },
    proxy: { type: 'string' },
    parallel: { type: 'string', default: '1' },
    'chunk-bytes': { type: 'string' },
    header: { type: 'string', multiple: true, default: [] },
  },
  strict: true,
});
if (!values.endpoint || !values.file || !values.proxy) {
  process.stderr.write('usage: tus_upload.mjs --endpoint URL --file PATH --proxy URL [--parallel N] [--chunk-bytes N]\n');
  process.exit(2);
}

/** Connections tunnelled through an HTTP proxy with CONNECT, kept alive as Node's own agent keeps them. */
class TunnelAgent extends http.Agent {
  constructor(proxy) {
    super({ keepAlive: true });
    this.proxy = new URL(proxy);
  }

  createConnection(options, callback) {
    const target = `${options.host}:${options.port}`;
    const socket = net.connect(Number(this.proxy.port), this.proxy.hostname);
    socket.setNoDelay(true);
    let head = Buffer.alloc(0);
    const onError = (err) => callback(err);
    const onData = (data) => {
      head = Buffer.concat([head, data]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      const status = head.subarray(0, end).toString('latin1').split(' ')[1];
      if (status !== '200') {
        socket.destroy();
        callback(new Error(`the proxy refused CONNECT ${target}: ${status}`));
        return;
      }
      if (head.length > end + 4) socket.unshift(head.subarray(end + 4));
      callback(null, socket);
    };
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('connect', () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
  }
}

const headers = Object.fromEntries(
  values.header.map((h) => {
    const i = h.indexOf(':');
    return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
  }),
);
const size = fs.statSync(values.file).size;
const started = Number(process.hrtime.bigint()) / 1e9;
const upload = new tus.Upload(fs.createReadStream(values.file), {
  endpoint: values.endpoint,
  // tus-js-client refuses uploadSize with parallelUploads; it then takes the size from the file the stream reads.
  ...(Number(values.parallel) > 1 ? {} : { uploadSize: size }),
  parallelUploads: Number(values.parallel),
  ...(values['chunk-bytes'] ? { chunkSize: Number(values['chunk-bytes']) } : {}),
  metadata: { filename: path.basename(values.file), filetype: 'application/octet-stream' },
  headers,
  httpStack: new tus.DefaultHttpStack({ agent: new TunnelAgent(values.proxy) }),
  onSuccess() {
    const url = upload.url;
    const id = new URL(url).pathname.split('/').filter(Boolean).pop();
    const seconds = Number(process.hrtime.bigint()) / 1e9 - started;
    process.stdout.write(`${JSON.stringify({ url, id, started_monotonic: started, seconds })}\n`);
    process.exit(0);
  },
  onError(err) {
    process.stderr.write(`tus upload failed: ${err.message ?? err}\n`);
    process.exit(1);
  },
});
upload.start();
