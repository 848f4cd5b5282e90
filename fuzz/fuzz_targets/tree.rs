//! `tree::decode` on arbitrary bytes (a directory listing, JSON Lines).
//!
//! Checked: no panic; every node that decodes has a safe name (what makes
//! restore safe), names strictly increase, fields fit the node's type; and
//! the nodes re-encode (`tree::encode`) to a listing that decodes to the
//! same nodes.

#![no_main]

use backup_core::internals::tree::{self, NodeKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(nodes) = tree::decode("fuzz", data) else {
        return;
    };
    for node in &nodes {
        assert!(
            tree::validate_name(&node.name).is_ok(),
            "unsafe name {:?}",
            node.name
        );
        assert!(node.mode <= 0o7777);
        match node.kind {
            NodeKind::File => assert!(node.subtree.is_none() && node.target.is_none()),
            NodeKind::Dir => assert!(node.subtree.is_some() && node.content.is_empty()),
            NodeKind::Symlink => assert!(node.target.is_some() && node.content.is_empty()),
        }
    }
    for pair in nodes.windows(2) {
        assert!(
            pair[0].name.as_bytes() < pair[1].name.as_bytes(),
            "names not increasing"
        );
    }
    let mut copy = nodes.clone();
    let encoded = match tree::encode(&mut copy) {
        Ok(encoded) => encoded,
        Err(error) => panic!("decoded nodes do not encode: {error}"),
    };
    assert_eq!(copy, nodes, "encode reordered sorted nodes");
    match tree::decode("fuzz", &encoded) {
        Ok(again) => assert_eq!(again, nodes, "encode → decode changed the nodes"),
        Err(error) => panic!("an encoded listing does not decode: {error}"),
    }
});
