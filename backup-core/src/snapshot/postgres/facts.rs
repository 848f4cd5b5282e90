//! What a base backup's `backup_label` and `backup_manifest` say, and WAL
//! positions and segment names.

use std::collections::BTreeMap;

/// A WAL position (`X/Y` in hexadecimal) as a number.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (high <= u64::from(u32::MAX) && low <= u64::from(u32::MAX)).then_some((high << 32) | low)
}

/// A WAL position as PostgreSQL prints it.
pub(crate) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The name of the WAL segment file of `timeline` holding `lsn`.
pub(crate) fn segment_name(timeline: u32, lsn: u64, segment_size: u64) -> String {
    let segment_size = segment_size.max(1 << 20);
    let number = lsn / segment_size;
    let per_id = 0x1_0000_0000 / segment_size;
    format!(
        "{timeline:08X}{:08X}{:08X}",
        number / per_id,
        number % per_id
    )
}

/// How a database name is stored at the backup's root: `/` and `%` are
/// escaped, and a name of only dots gets a `%` escape too.
pub(crate) fn stored_name(database: &str) -> String {
    let mut out = String::new();
    for (at, c) in database.chars().enumerate() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '\0' => out.push_str("%00"),
            '.' if at == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out
}

/// The database a stored name stands for (see [`stored_name`]).
pub(crate) fn database_of(stored: &str) -> String {
    let mut out = Vec::new();
    let bytes = stored.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' && at + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                at += 3;
                continue;
            }
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The facts of a base backup from its label and manifest.
pub(crate) fn physical_facts(
    label: &[u8],
    manifest: &[u8],
    segment_size: u64,
) -> std::result::Result<BTreeMap<String, serde_json::Value>, String> {
    let label_text = String::from_utf8_lossy(label).into_owned();
    let field = |key: &str| {
        label_text
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
            .map(str::trim)
    };
    let manifest: serde_json::Value = serde_json::from_slice(manifest)
        .map_err(|error| format!("its backup_manifest is not JSON: {error}"))?;
    let range = manifest
        .get("WAL-Ranges")
        .and_then(serde_json::Value::as_array)
        .and_then(|ranges| ranges.last())
        .ok_or("its backup_manifest has no WAL range")?;
    let start = range
        .get("Start-LSN")
        .and_then(serde_json::Value::as_str)
        .and_then(parse_lsn)
        .ok_or("its backup_manifest's WAL range has no start")?;
    let stop = range
        .get("End-LSN")
        .and_then(serde_json::Value::as_str)
        .and_then(parse_lsn)
        .ok_or("its backup_manifest's WAL range has no end")?;
    let timeline = range
        .get("Timeline")
        .and_then(serde_json::Value::as_u64)
        .and_then(|timeline| u32::try_from(timeline).ok())
        .ok_or("its backup_manifest's WAL range has no timeline")?;
    let mut facts = BTreeMap::new();
    facts.insert("timeline".into(), timeline.into());
    facts.insert("start_lsn".into(), format_lsn(start).into());
    facts.insert("stop_lsn".into(), format_lsn(stop).into());
    facts.insert(
        "wal_start".into(),
        segment_name(timeline, start, segment_size).into(),
    );
    // The segment holding the last byte the backup needs.
    facts.insert(
        "wal_stop".into(),
        segment_name(timeline, stop.saturating_sub(1).max(start), segment_size).into(),
    );
    if let Some(time) = field("START TIME") {
        facts.insert("start_time".into(), time.into());
    }
    facts.insert("backup_label".into(), label_text.into());
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_segment_names_are_postgresql_s() {
        assert_eq!(parse_lsn("0/2000028"), Some(0x200_0028));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(
            segment_name(1, 0x200_0028, 16 << 20),
            "000000010000000000000002"
        );
        // 256 segments of 16 MiB per "log id".
        assert_eq!(
            segment_name(2, 0x1_0300_0000, 16 << 20),
            "000000020000000100000003"
        );
        assert_eq!(
            segment_name(1, 0x1_0300_0000, 64 << 20),
            "000000010000000100000000"
        );
    }

    #[test]
    fn database_names_survive_storing() {
        for name in ["app", "my db", "a/b", "100%", ".", "..", ".hidden", "x.y"] {
            let stored = stored_name(name);
            assert!(!stored.contains('/'), "{stored}");
            assert!(!stored.starts_with('.'), "{stored}");
            assert_eq!(database_of(&stored), name);
        }
    }

    #[test]
    fn a_label_and_manifest_give_the_backup_s_facts() {
        let label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
START TIME: 2026-12-07 14:16:10 UTC\nLABEL: x\nSTART TIMELINE: 1\n";
        let manifest = br#"{ "PostgreSQL-Backup-Manifest-Version": 1, "Files": [],
"WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/3000100" } ] }"#;
        let facts = physical_facts(label, manifest, 16 << 20).unwrap();
        assert_eq!(facts["timeline"], 1);
        assert_eq!(facts["start_lsn"], "0/2000028");
        assert_eq!(facts["stop_lsn"], "0/3000100");
        assert_eq!(facts["wal_start"], "000000010000000000000002");
        assert_eq!(facts["wal_stop"], "000000010000000000000003");
        assert_eq!(facts["start_time"], "2026-12-07 14:16:10 UTC");
        assert!(physical_facts(label, b"{}", 16 << 20).is_err());
    }
}
