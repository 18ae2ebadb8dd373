// A Deno step from a file (everything.yaml): it may only read the variable it was granted.
const data = Wfe.getData() as { version: string; branch: string };
const who = Deno.env.get("WFE_EXAMPLE_USER") ?? "nobody";
Wfe.log(`notifying about ${data.version} on ${data.branch}`);
Wfe.setOutput("notified_by", who);
