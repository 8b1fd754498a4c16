// PeerJS server for bench/load.py: the `peer` package with its defaults, except
// no per-client console logging, and limits raised so the idle test can reach
// 10,000 connections (concurrent_limit) without heartbeats (alive_timeout).
// Usage: node server.js PORT
const { PeerServer } = require("peer");

const port = Number(process.argv[2] || 9000);
PeerServer({
  host: "127.0.0.1",
  port,
  path: "/",
  concurrent_limit: 100000,
  alive_timeout: 3600000,
}, () => console.log(`PeerServer listening on 127.0.0.1:${port}`));
