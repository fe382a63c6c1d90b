"""Independent check of a kraftd checkpoint with kafka-python's record decoder.

Usage: check_checkpoint.py CHECKPOINT EXPECTED_JSON

EXPECTED_JSON holds {"epoch": int, "header_types": [int], "values": [hex, ...]}: the epoch
every batch must carry, the control types of the header batch, and every metadata record
value in order. No kraftd code is involved in reading the file.
"""
import json
import sys

from kafka.record.memory_records import MemoryRecords


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def main():
    path, expected_path = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        buf = f.read()
    with open(expected_path) as f:
        expected = json.load(f)

    records = MemoryRecords(buf)
    if records.valid_bytes() != len(buf):
        fail(f"valid_bytes {records.valid_bytes()} != file size {len(buf)}: trailing or truncated batch")

    batches = list(records)
    if len(batches) < 3:
        fail(f"only {len(batches)} batches; need header, data, footer")

    next_offset = 0
    values = []
    for i, batch in enumerate(batches):
        if batch.magic != 2:
            fail(f"batch {i}: magic {batch.magic}")
        if not batch.validate_crc():
            fail(f"batch {i}: CRC invalid")
        if batch.base_offset != next_offset:
            fail(f"batch {i}: base offset {batch.base_offset}, expected {next_offset}")
        if batch.leader_epoch != expected["epoch"]:
            fail(f"batch {i}: leader epoch {batch.leader_epoch}, expected {expected['epoch']}")
        recs = list(batch)
        for r in recs:
            if r.offset != next_offset:
                fail(f"batch {i}: record offset {r.offset}, expected {next_offset}")
            next_offset += 1
        if batch.last_offset != next_offset - 1:
            fail(f"batch {i}: last offset {batch.last_offset}, expected {next_offset - 1}")
        if i == 0:
            if not batch.is_control_batch:
                fail("first batch is not a control batch")
            types = [r.type for r in recs]
            if types != expected["header_types"]:
                fail(f"header batch control types {types}, expected {expected['header_types']}")
        elif i == len(batches) - 1:
            if not batch.is_control_batch:
                fail("last batch is not a control batch")
            if [r.type for r in recs] != [4]:
                fail(f"last batch types {[r.type for r in recs]}, expected only SnapshotFooterRecord (4)")
        else:
            if batch.is_control_batch:
                fail(f"batch {i}: unexpected control batch")
            if len(recs) > 10000:
                fail(f"batch {i}: {len(recs)} records (limit 10000)")
            for r in recs:
                if r.key is not None:
                    fail(f"record {r.offset}: metadata record with a key")
                values.append(bytes(r.value))

    want = expected["values"]
    if len(values) != len(want):
        fail(f"{len(values)} metadata records, expected {len(want)}")
    for n, (got, hexval) in enumerate(zip(values, want)):
        if got != bytes.fromhex(hexval):
            fail(f"metadata record #{n}: value {got.hex()} != expected {hexval}")

    print(f"OK: {len(batches)} batches, {next_offset} offsets, {len(values)} metadata records, "
          f"all CRCs valid, values byte-identical")


if __name__ == "__main__":
    main()
