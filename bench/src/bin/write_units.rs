//! DynamoDB write units per chunk at 1, 100, 1,000 and 10,000 parts, before and after the part ledger. Pure
//! computation from the record encoding (the records of `shared::store::sizing`, sized by DynamoDB's item-size
//! rule): no emulator is needed. Prints one JSON line per part count.

use serde_json::json;
use shared::store::sizing::chunk_cost;

fn main() {
    for parts in [1, 100, 1_000, 10_000] {
        let c = chunk_cost(parts);
        let line = json!({
            "bench": "write_units", "parts": parts,
            "item_bytes_typical": c.typical_bytes, "wcu_per_chunk_typical": c.typical_units,
            "item_bytes_worst": c.worst_bytes, "wcu_per_chunk_worst": c.worst_units,
            "wcu_per_chunk_before": c.before_units,
        });
        println!("{line}");
    }
}
