//! One entry point that throws arbitrary bytes at every decoder of what members send each other
//! (the bodies of `/cluster/*` and a snapshot's data), for the `cargo fuzz` target
//! (`cluster/fuzz`, `raft_rpc`) and for the randomized test below. It must never panic.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::{
    rpc::WriteRequest,
    state_machine::SmData,
    types::{NodeId, TypeConfig},
};

fn decode<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// Decodes `data` as each request body of the node-to-node endpoints and as snapshot data, and
/// what a snapshot request carries as a snapshot.
pub fn decode_every_rpc(data: &[u8]) {
    let _ = decode::<AppendEntriesRequest<TypeConfig>>(data);
    let _ = decode::<VoteRequest<NodeId>>(data);
    let _ = decode::<WriteRequest>(data);
    let _ = decode::<SmData>(data);
    if let Some(req) = decode::<InstallSnapshotRequest<TypeConfig>>(data) {
        let _ = decode::<SmData>(&req.data);
    }
}

/// A small xorshift for the randomized tests that stand in for fuzzing in `cargo test`
/// (here and in the application's `http::fuzzing`): deterministic, without a dependency.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies as members send them, to mutate.
    const SEEDS: &[&str] = &[
        r#"{"vote":{"leader_id":{"term":2,"node_id":1},"committed":false},"prev_log_id":null,"entries":[],"leader_commit":null}"#,
        r#"{"vote":{"leader_id":{"term":3,"node_id":2},"committed":true},"prev_log_id":{"leader_id":{"term":2,"node_id":1},"index":7},"entries":[{"log_id":{"leader_id":{"term":3,"node_id":2},"index":8},"payload":"Blank"}],"leader_commit":{"leader_id":{"term":2,"node_id":1},"index":7}}"#,
        r#"{"vote":{"leader_id":{"term":1,"node_id":3},"committed":false},"last_log_id":null}"#,
        r#"{"req":"join","node":4,"api_addr":"http://10.0.0.4:3000"}"#,
        r#"{"req":"command","command":{"Renew":{"node":1,"at_ms":5}}}"#,
        r#"{"vote":{"leader_id":{"term":2,"node_id":1},"committed":true},"meta":{"last_log_id":null,"last_membership":{"log_id":null,"membership":{"configs":[],"nodes":{}}},"snapshot_id":"s"},"offset":0,"data":[123,125],"done":true}"#,
    ];

    /// The seeds and an empty snapshot's data as the state machine writes it.
    fn seeds() -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
        all.push(serde_json::to_vec(&SmData::default()).unwrap());
        all
    }

    #[test]
    fn random_member_bodies_never_panic() {
        let mut rng = XorShift(0x5eed_c1a5_7e12_0001);
        let seeds = seeds();
        for round in 0..4000 {
            let mut b = seeds[round % seeds.len()].clone();
            match rng.below(5) {
                0 => {
                    for _ in 0..1 + rng.below(8) {
                        let i = rng.below(b.len());
                        b[i] ^= 1 << rng.below(8);
                    }
                }
                1 => b.truncate(rng.below(b.len())),
                2 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let (i, j) = (rng.below(b.len()), rng.below(other.len()));
                    b.truncate(i);
                    b.extend_from_slice(&other[j..]);
                }
                3 => {
                    let depth = rng.below(3000);
                    b = [vec![b'['; depth], vec![b']'; depth]].concat();
                }
                _ => b = (0..rng.below(256)).map(|_| rng.next_u64() as u8).collect(),
            }
            decode_every_rpc(&b);
        }
        for s in &seeds {
            decode_every_rpc(s);
        }
    }

    /// The seeds are what members send: mutations start from valid bodies.
    #[test]
    fn the_seeds_decode() {
        let seeds = seeds();
        let b = |i: usize| seeds[i].as_slice();
        assert!(decode::<AppendEntriesRequest<TypeConfig>>(b(0)).is_some());
        assert!(decode::<AppendEntriesRequest<TypeConfig>>(b(1)).is_some());
        assert!(decode::<VoteRequest<NodeId>>(b(2)).is_some());
        assert!(decode::<WriteRequest>(b(3)).is_some());
        assert!(decode::<InstallSnapshotRequest<TypeConfig>>(b(5)).is_some());
        assert!(decode::<SmData>(b(6)).is_some());
    }
}
