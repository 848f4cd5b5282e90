//! What `nodetool` prints, read into facts: `version`, `info -T`,
//! `describecluster`, `listsnapshots` (Cassandra 4.x's formats).

use std::collections::BTreeMap;

/// A node's identity and place in the ring.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeInfo {
    pub(crate) host_id: String,
    pub(crate) datacenter: String,
    pub(crate) rack: String,
    pub(crate) tokens: Vec<String>,
}

/// `ReleaseVersion: 4.0.11` → `4.0.11`.
pub(crate) fn parse_version(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "ReleaseVersion").then(|| value.trim().to_string())
    })
}

/// The major version of `4.0.11` (`4`).
pub(crate) fn major(version: &str) -> Option<u32> {
    version.trim().split('.').next()?.parse().ok()
}

/// `nodetool info -T`: `Key : value` lines, one `Token : N` per token.
pub(crate) fn parse_info(output: &str) -> Result<NodeInfo, String> {
    let mut info = NodeInfo::default();
    for line in output.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "ID" => info.host_id = value.to_string(),
            "Data Center" => info.datacenter = value.to_string(),
            "Rack" => info.rack = value.to_string(),
            "Token" => {
                if value.starts_with('(') {
                    return Err("`nodetool info` listed no tokens (it was not given -T)".into());
                }
                info.tokens.push(value.to_string());
            }
            _ => {}
        }
    }
    if info.host_id.is_empty() {
        return Err("`nodetool info -T` printed no ID line".into());
    }
    if info.tokens.is_empty() {
        return Err("`nodetool info -T` printed no Token lines".into());
    }
    Ok(info)
}

/// `nodetool describecluster`: name, snitch, partitioner and the schema
/// versions with the nodes holding each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClusterInfo {
    pub(crate) name: String,
    pub(crate) snitch: String,
    pub(crate) partitioner: String,
    pub(crate) schema_versions: BTreeMap<String, Vec<String>>,
}

pub(crate) fn parse_describecluster(output: &str) -> Result<ClusterInfo, String> {
    let mut info = ClusterInfo::default();
    let mut in_schema = false;
    for line in output.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if in_schema {
            // `\t\t<uuid>: [127.0.0.1, 127.0.0.2]`
            if let Some((version, nodes)) = trimmed.split_once(": [") {
                if line.starts_with("\t\t") || line.starts_with("    ") {
                    let nodes = nodes.trim_end_matches(']');
                    info.schema_versions.insert(
                        version.trim().to_string(),
                        nodes
                            .split(',')
                            .map(|node| node.trim().to_string())
                            .filter(|node| !node.is_empty())
                            .collect(),
                    );
                    continue;
                }
            }
            in_schema = false;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        match key.trim() {
            "Name" if info.name.is_empty() => info.name = value.trim().to_string(),
            "Snitch" => info.snitch = value.trim().to_string(),
            "Partitioner" => info.partitioner = value.trim().to_string(),
            "Schema versions" => in_schema = true,
            _ => {}
        }
    }
    if info.name.is_empty() {
        return Err("`nodetool describecluster` printed no Name line".into());
    }
    Ok(info)
}

/// The snapshot names `nodetool listsnapshots` prints (the first column
/// of its table), each once.
pub(crate) fn parse_listsnapshots(output: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in output.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty()
            || trimmed.starts_with("Snapshot Details")
            || trimmed.starts_with("Snapshot name")
            || trimmed.starts_with("Total TrueDiskSpaceUsed")
            || trimmed.starts_with("There are no snapshots")
        {
            continue;
        }
        if let Some(name) = trimmed.split_whitespace().next() {
            if !names.iter().any(|known| known == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_with_tokens() {
        let output = "ID                     : 2a0f2b4e-0c39-4a3e-9a51-8f7a0c1d2e3f\n\
                      Gossip active          : true\n\
                      Data Center            : dc1\n\
                      Rack                   : rack1\n\
                      Key Cache              : entries 10, size 896 bytes, capacity 51 MiB\n\
                      Percent Repaired       : 100.0%\n\
                      Token                  : -9199402497219069588\n\
                      Token                  : 42\n";
        let info = parse_info(output).unwrap();
        assert_eq!(info.host_id, "2a0f2b4e-0c39-4a3e-9a51-8f7a0c1d2e3f");
        assert_eq!(info.datacenter, "dc1");
        assert_eq!(info.rack, "rack1");
        assert_eq!(info.tokens, ["-9199402497219069588", "42"]);
        let without =
            "ID : x\nToken                  : (invoke with -T/--tokens to see all 16 tokens)\n";
        assert!(parse_info(without).unwrap_err().contains("-T"));
    }

    #[test]
    fn describecluster() {
        let output = "Cluster Information:\n\tName: Test Cluster\n\tSnitch: \
                      org.apache.cassandra.locator.SimpleSnitch\n\tDynamicEndPointSnitch: \
                      enabled\n\tPartitioner: org.apache.cassandra.dht.Murmur3Partitioner\n\t\
                      Schema versions:\n\t\t86afa796-d883-3932-aa73-6b017cef0d19: [127.0.0.1, \
                      127.0.0.2]\n\nStats for all nodes:\n\tLive: 2\n";
        let info = parse_describecluster(output).unwrap();
        assert_eq!(info.name, "Test Cluster");
        assert_eq!(
            info.partitioner,
            "org.apache.cassandra.dht.Murmur3Partitioner"
        );
        assert_eq!(
            info.schema_versions["86afa796-d883-3932-aa73-6b017cef0d19"],
            ["127.0.0.1", "127.0.0.2"]
        );
    }

    #[test]
    fn listsnapshots_and_version() {
        let output = "Snapshot Details: \nSnapshot name Keyspace name Column family name True \
                      size Size on disk\nbackup-toolkit-1 shop orders 0 bytes 4.8 KiB\n\
                      backup-toolkit-1 shop customers 0 bytes 1 KiB\nother system local 0 \
                      bytes 1 KiB\n\nTotal TrueDiskSpaceUsed: 0 bytes\n";
        assert_eq!(parse_listsnapshots(output), ["backup-toolkit-1", "other"]);
        assert!(parse_listsnapshots("There are no snapshots\n").is_empty());
        assert_eq!(
            parse_version("ReleaseVersion: 4.0.11\n").as_deref(),
            Some("4.0.11")
        );
        assert_eq!(major("4.0.11"), Some(4));
    }
}
