//! Typed identities and records.

use ferrocast_media::StreamName;

/// Why a name is not a valid identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not 1 to 64 characters of `[A-Za-z0-9._-]`.
    #[error("a node id is 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-', not {0:?}")]
    BadNodeId(String),
    /// Not a role name.
    #[error("unknown role {0:?} (ingest, transcode or package)")]
    BadRole(String),
}

/// A process of the platform (a pod): `[A-Za-z0-9._-]{1,64}`, so that it
/// can be part of a Redis key and a log line as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// A node id, validated.
    pub fn new(id: &str) -> Result<Self, IdError> {
        let valid = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(NodeId(id.to_owned()))
        } else {
            Err(IdError::BadNodeId(id.to_owned()))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a node does for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Receives the publisher's feed.
    Ingest,
    /// Transcodes the ABR ladder.
    Transcode,
    /// Packages the stream group (source and every rung together: the
    /// renditions share one alignment).
    Package,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Ingest, Role::Transcode, Role::Package];

    /// The role's name in keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Transcode => "transcode",
            Role::Package => "package",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Result<Role, IdError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| IdError::BadRole(name.to_owned()))
    }
}

/// A fencing epoch: grows with every lease taken for a stream and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u64);

/// A role held for a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The stream.
    pub stream: StreamName,
    /// The role.
    pub role: Role,
    /// Who holds it.
    pub holder: NodeId,
    /// Its fencing epoch.
    pub epoch: Epoch,
    /// A random value naming this one lease, so that renewing and
    /// releasing only ever act on it (never on a successor's).
    pub token: String,
}

impl Lease {
    /// The value stored for the lease: `holder epoch token`.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.holder, self.epoch.0, self.token)
    }

    /// The lease of `stream` and `role` stored as `value`.
    pub fn decode(stream: &StreamName, role: Role, value: &str) -> Option<Lease> {
        let mut parts = value.split(' ');
        let holder = NodeId::new(parts.next()?).ok()?;
        let epoch = Epoch(parts.next()?.parse().ok()?);
        let token = parts.next()?.to_owned();
        if token.is_empty() || parts.next().is_some() {
            return None;
        }
        Some(Lease {
            stream: stream.clone(),
            role,
            holder,
            epoch,
            token,
        })
    }
}

/// A live node: its id, its roles and where its services answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node.
    pub id: NodeId,
    /// What it does.
    pub roles: Vec<Role>,
    /// Where others reach it (its bus or origin endpoint), e.g.
    /// `http://10.0.0.5:7000`; no spaces.
    pub endpoint: String,
    /// How many streams it holds for its role now (a transcoder takes new
    /// work only while no live peer holds fewer).
    pub load: u32,
}

impl NodeRecord {
    /// `roles endpoint load`, roles comma-separated.
    pub fn encode(&self) -> String {
        let roles: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        format!("{} {} {}", roles.join(","), self.endpoint, self.load)
    }

    /// The record of `id` stored as `value` (a record without a load, as
    /// written before loads were recorded, has load 0).
    pub fn decode(id: NodeId, value: &str) -> Option<NodeRecord> {
        let mut parts = value.split(' ');
        let (roles, endpoint) = (parts.next()?, parts.next()?);
        let load = match parts.next() {
            None => 0,
            Some(load) => load.parse().ok()?,
        };
        if endpoint.is_empty() || parts.next().is_some() {
            return None;
        }
        let roles = roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|r| Role::parse(r).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(NodeRecord {
            id,
            roles,
            endpoint: endpoint.to_owned(),
            load,
        })
    }
}

/// A random lease token (128 bits, hex).
pub(crate) fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn node_ids_fit_in_keys_and_records_round_trip() {
        assert!(NodeId::new("transcoder-7.gpu_a").is_ok());
        for bad in ["", "a b", "a:b", "é", &"x".repeat(65)] {
            assert!(NodeId::new(bad).is_err(), "{bad:?}");
        }
        let stream = StreamName::new("cam").unwrap();
        let lease = Lease {
            stream: stream.clone(),
            role: Role::Package,
            holder: NodeId::new("p1").unwrap(),
            epoch: Epoch(42),
            token: new_token(),
        };
        assert_eq!(
            Lease::decode(&stream, Role::Package, &lease.encode()),
            Some(lease)
        );
        assert_eq!(Lease::decode(&stream, Role::Package, "p1 x t"), None);
        assert_eq!(Lease::decode(&stream, Role::Package, "p1 1"), None);
        let node = NodeRecord {
            id: NodeId::new("n").unwrap(),
            roles: vec![Role::Ingest, Role::Package],
            endpoint: "http://127.0.0.1:7000".into(),
            load: 3,
        };
        assert_eq!(
            NodeRecord::decode(node.id.clone(), "ingest,package http://127.0.0.1:7000")
                .map(|n| n.load),
            Some(0),
            "a record without a load"
        );
        assert_eq!(
            NodeRecord::decode(node.id.clone(), &node.encode()),
            Some(node)
        );
        assert_eq!(
            Role::parse("edge").unwrap_err(),
            IdError::BadRole("edge".into())
        );
    }
}
