//! Who is in the cluster: members, and their ids derived as etcd derives
//! them, so every member computes the same map from the same settings.
//!
//! - A member's id is the first 8 bytes (big-endian) of the SHA-1 of its
//!   sorted peer URLs, concatenated, followed by the cluster token (etcd's
//!   `computeMemberID`). The default single member (`http://localhost:2380`,
//!   token `etcd-cluster`) thus has etcd's default id, `8e9e05c52164694d`.
//! - The cluster id is the first 8 bytes of the SHA-1 of the sorted member
//!   ids, each 8 bytes big-endian (etcd's `genID`).

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Raft's node id: the member id.
pub type MemberId = u64;

/// What the cluster knows of a member (openraft's node type): replicated
/// with the membership, so every member can reach and report every other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name (etcd's `--name`).
    pub name: String,
    /// The URLs its peers reach it at.
    pub peer_urls: Vec<String>,
    /// The URLs clients reach it at, once published.
    pub client_urls: Vec<String>,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

/// What each member publishes about itself through the log once it runs
/// (as etcd's members publish their attributes): its name and client URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttributes {
    /// Its name.
    pub name: String,
    /// The URLs clients reach it at.
    pub client_urls: Vec<String>,
}

/// A member as reported to clients (etcd's MemberList entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its id.
    pub id: MemberId,
    /// Its name (empty until it has published it).
    pub name: String,
    /// The URLs its peers reach it at.
    pub peer_urls: Vec<String>,
    /// Empty until the member has published them.
    pub client_urls: Vec<String>,
    /// A learner: it receives the log but does not vote.
    pub is_learner: bool,
}

/// A member's part in the cluster, as it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It leads.
    Leader,
    /// It follows a leader (or waits for one).
    Follower,
    /// It stands for election.
    Candidate,
    /// It receives the log without a vote.
    Learner,
    /// The member is shutting down.
    Shutdown,
}

impl Role {
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

/// What a member knows of its cluster now ([`crate::Concord::cluster`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member.
    pub member_id: MemberId,
    /// Its role.
    pub role: Role,
    /// The leader this member follows (itself if it leads), if one is known.
    pub leader: Option<MemberId>,
    /// The Raft term this member is in.
    pub term: u64,
    /// Every member, in member id order.
    pub members: Vec<MemberInfo>,
}

/// A change of the membership, as the leader carries it out (a follower
/// hands it over the peer protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MembershipChange {
    /// A new member at `peer_urls`: a learner, or a voter once caught up.
    Add {
        peer_urls: Vec<String>,
        learner: bool,
    },
    Promote {
        id: MemberId,
    },
    Remove {
        id: MemberId,
    },
    Update {
        id: MemberId,
        peer_urls: Vec<String>,
    },
}

/// What a membership change answers: the member it concerned and every
/// member afterwards (etcd's MemberAdd/Remove/Update/Promote responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChanged {
    /// The member added, removed, updated or promoted.
    pub member: MemberInfo,
    /// Every member after the change.
    pub members: Vec<MemberInfo>,
}

/// What any member tells anyone who asks on the peer port (a member about
/// to join, a member checking whether it was removed): the cluster id and
/// the membership it has, with that membership's log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClusterInfo {
    pub cluster_id: u64,
    /// Whether the member answering leads: only a leader's membership is
    /// sure to hold every committed change.
    pub from_leader: bool,
    pub membership_index: u64,
    pub members: Vec<MemberInfo>,
}

/// etcd's member id for `peer_urls` in the cluster named by `token`.
pub fn member_id(peer_urls: &[String], token: &str) -> MemberId {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut hasher = Sha1::new();
    hasher.update(urls.concat().as_bytes());
    hasher.update(token.as_bytes());
    first_u64(&hasher.finalize())
}

/// The id of a member added at runtime: etcd's, from its peer URLs, the
/// cluster token and the time, so a member added again at the same URLs
/// (after a removal) gets a new id.
pub(crate) fn new_member_id(peer_urls: &[String], token: &str, unix_secs: u64) -> MemberId {
    member_id(peer_urls, &format!("{token}{unix_secs}"))
}

/// Checks peer URLs as etcd does: each an `http`/`https` URL with a host
/// and a port, and nothing after the port.
pub(crate) fn check_peer_urls(urls: &[String]) -> Result<(), String> {
    if urls.is_empty() {
        return Err("no peer URL given".into());
    }
    for url in urls {
        let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("{url:?}: the scheme must be http or https"));
        }
        let authority = uri.authority().ok_or_else(|| format!("{url:?}: no host"))?;
        if authority.port_u16().is_none() || authority.host().is_empty() {
            return Err(format!("{url:?}: a peer URL needs a host and a port"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!("{url:?}: a peer URL has no path"));
        }
    }
    Ok(())
}

/// etcd's cluster id for a set of member ids.
pub fn cluster_id(members: impl IntoIterator<Item = MemberId>) -> u64 {
    let mut ids: Vec<MemberId> = members.into_iter().collect();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-1 is 20 bytes"))
}

/// Parses etcd's `--initial-cluster` (`name=url,name=url,...`; a name may
/// appear several times, once per peer URL) into members in name order.
pub fn parse_initial_cluster(spec: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut members: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) =
            part.split_once('=').ok_or_else(|| format!("--initial-cluster: {part:?} is not name=peer-url"))?;
        if name.is_empty() || url.is_empty() {
            return Err(format!("--initial-cluster: {part:?} is not name=peer-url"));
        }
        members.entry(name.to_string()).or_default().push(url.to_string());
    }
    if members.is_empty() {
        return Err("--initial-cluster lists no member".into());
    }
    Ok(members.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_member_has_etcds_default_id() {
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{id:016x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:016x}", cluster_id([id])), "cdf818194e3a8c32");
    }

    #[test]
    fn ids_ignore_url_order_and_depend_on_the_token() {
        let a = member_id(&["http://b:1".into(), "http://a:1".into()], "t");
        assert_eq!(a, member_id(&["http://a:1".into(), "http://b:1".into()], "t"));
        assert_ne!(a, member_id(&["http://a:1".into(), "http://b:1".into()], "other"));
        assert_eq!(cluster_id([1, 2, 3]), cluster_id([3, 1, 2]));
    }

    #[test]
    fn initial_cluster_is_parsed_by_name() {
        let parsed = parse_initial_cluster("b=http://b:2380, a=http://a:2380,a=http://a2:2380").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("a".to_string(), vec!["http://a:2380".to_string(), "http://a2:2380".to_string()]),
                ("b".to_string(), vec!["http://b:2380".to_string()])
            ]
        );
        assert!(parse_initial_cluster("nonsense").is_err());
        assert!(parse_initial_cluster("").is_err());
    }
}
