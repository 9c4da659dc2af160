// How Debian's Chromium is started headless on this kind of machine (as root, no network beyond loopback): no
// sandbox, no GPU, and none of its own traffic to Google's hosts. Shared by the browser tests and the link benchmark
// (bench/link/clients/browser.mjs); no dependencies, so either can import it without the other's packages.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
