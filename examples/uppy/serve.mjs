// Serves this example on http://127.0.0.1:8081 (PORT to change it): the page, and Uppy's bundle from node_modules
// (run `npm ci` here first). A site of its own, as a team's app would be; the API is elsewhere (`make run`).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const port = Number(process.env.PORT ?? 8081);
const files = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/s3.js': 's3.js',
  '/api-fetch.js': 'api-fetch.js',
  '/vendor/uppy.min.mjs': 'node_modules/uppy/dist/uppy.min.mjs',
  '/vendor/uppy.min.css': 'node_modules/uppy/dist/uppy.min.css',
};
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css' };

createServer(async (req, res) => {
  const file = files[new URL(req.url, 'http://example').pathname];
  try {
    if (!file) throw new Error('not found');
    const body = await readFile(path.join(here, file));
    res.writeHead(200, { 'content-type': `${types[path.extname(file)]}; charset=utf-8` });
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }
}).listen(port, '127.0.0.1', () => console.log(`Uppy example on http://127.0.0.1:${port}/ (API: make run)`));
