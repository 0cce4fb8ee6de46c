// docs/bucketing.md, spec version 1, in JavaScript: proof that the spec, not the Python
// package, defines the assignment. Run: node bucketing.mjs ../vectors.json  (exit 1 on mismatch)
import { readFileSync } from "node:fs";
import { xxh3 } from "@node-rs/xxhash";

const TWO_POW_MINUS_53 = 2 ** -53;

export function unitHash(salt, unitId) {
  // Hash UTF-8 bytes, never JS strings (UTF-16 code units).
  return xxh3.xxh64(Buffer.from(`${salt}:${unitId}`, "utf8"), 0n);
}

export function unitPosition(salt, unitId) {
  return Number(unitHash(salt, unitId) >> 11n) * TWO_POW_MINUS_53;
}

export function assigner({ salt, challengers, shadows }) {
  const bounds = [];
  let total = 0;
  for (const c of challengers) bounds.push((total += c.fraction)); // left to right, in order
  return {
    arm(unitId) {
      if (unitId === null || bounds.length === 0) return 0;
      const u = unitPosition(salt, unitId);
      const i = bounds.findIndex((b) => u < b);
      return i === -1 ? 0 : i + 1;
    },
    mirrors(unitId) {
      return shadows.flatMap((s, i) => (s.fraction >= 1 || unitPosition(s.salt, unitId) < s.fraction ? [i] : []));
    },
  };
}

if (process.argv[2]) {
  const v = JSON.parse(readFileSync(process.argv[2], "utf8"));
  let failures = 0;
  for (const h of v.hashes) {
    const got = unitHash(h.salt, h.unit_id).toString(16).padStart(16, "0");
    const pos = unitPosition(h.salt, h.unit_id);
    if (got !== h.xxh3_64 || pos !== h.position) {
      failures++;
      console.error(`hash mismatch ${JSON.stringify(h)}: got ${got} ${pos}`);
    }
  }
  const a = assigner(v.assignment_config);
  for (const x of v.assignments) {
    const arm = a.arm(x.unit_id);
    const mirrors = a.mirrors(x.unit_id);
    if (arm !== x.arm || JSON.stringify(mirrors) !== JSON.stringify(x.mirrors)) {
      failures++;
      console.error(`assignment mismatch ${JSON.stringify(x)}: got arm ${arm} mirrors ${mirrors}`);
    }
  }
  const total = v.hashes.length + v.assignments.length;
  console.log(`${total - failures} passed, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}
