// Drives Revka's standard Streamable HTTP path with the official TypeScript SDK's client
// (npm `@modelcontextprotocol/sdk`, `StreamableHTTPClientTransport`), given only the URL and a
// client token in `Authorization`.
//
// Reads REVKA_URL, REVKA_CLIENT_TOKEN and REVKA_TS_SDK (the SDK's package directory: this file
// lives outside the node_modules tree the SDK was installed in). Lists the tools, activates a
// deferred tool with tool_search (the server's tools/list_changed must arrive), lists again,
// calls it with an onprogress callback, calls an unknown tool (a JSON-RPC error), then ends the
// session with DELETE. Prints one JSON document with what it saw; exits non-zero on failure.
// Used by tests/interop.rs.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const sdk = process.env.REVKA_TS_SDK;
const load = (path) => import(pathToFileURL(join(sdk, 'dist/esm', path)).href);
const { Client } = await load('client/index.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
const { ToolListChangedNotificationSchema } = await load('types.js');

const tool = process.env.REVKA_TOOL ?? 'fault__progress';
const out = {};
try {
  const transport = new StreamableHTTPClientTransport(new URL(process.env.REVKA_URL), {
    requestInit: { headers: { Authorization: `Bearer ${process.env.REVKA_CLIENT_TOKEN}` } },
  });
  const errors = [];
  transport.onerror = (e) => errors.push(String(e));
  const client = new Client({ name: 'ts-sdk-standard', version: '1' });
  let listChanged = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    listChanged += 1;
  });
  await client.connect(transport);
  out.session_id = transport.sessionId ?? null;
  out.server_name = client.getServerVersion()?.name ?? null;
  out.capabilities = client.getServerCapabilities() ?? null;
  const names = (listed) => listed.tools.map((t) => t.name);
  out.tools_before = names(await client.listTools());
  const search = await client.callTool({ name: 'tool_search', arguments: { query: `select:${tool}` } });
  out.search_text = search.content[0].text;
  for (let i = 0; i < 200 && listChanged === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  out.list_changed = listChanged;
  out.tools_after = names(await client.listTools());
  const progress = [];
  const result = await client.callTool(
    { name: tool, arguments: { steps: 3, interval_ms: 5 } },
    undefined,
    { onprogress: (p) => progress.push(p) },
  );
  out.result_text = result.content[0].text;
  out.progress = progress;
  try {
    await client.callTool({ name: 'does_not_exist', arguments: {} });
    out.unknown_error = null;
  } catch (e) {
    out.unknown_error = { code: e.code ?? null, message: String(e.message) };
  }
  await transport.terminateSession();
  out.session_after_delete = transport.sessionId ?? null;
  await client.close();
  // Errors the transport reported along the way, other than the end of the GET stream the
  // DELETE and the close cause.
  out.transport_errors = errors.filter((e) => !/abort/i.test(e));
  console.log(JSON.stringify(out));
} catch (e) {
  console.error(e);
  console.log(JSON.stringify({ ...out, error: String(e) }));
  process.exit(1);
}
