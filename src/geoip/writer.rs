//! A minimal MaxMind DB (`.mmdb`) **writer** for tests and fixtures.
//!
//! It exists so tests can build small databases in any schema (MaxMind
//! GeoIP2/GeoLite2 Country/City/ASN, ip-location-db) without shipping
//! MaxMind's non-redistributable files. The output is read back by the real
//! `maxminddb` reader, so the tests stay honest.
//!
//! Format (<https://maxmind.github.io/MaxMind-DB/>): a binary search tree
//! (24-bit records here), 16 zero bytes, the data section, then
//! `\xAB\xCD\xEFMaxMind.com` followed by the metadata map.
//!
//! Limits: 24-bit records (at most ~16 M nodes + data bytes, plenty for
//! fixtures); no pointer compression (identical records are de-duplicated);
//! later inserts win over earlier ones where networks overlap.

use std::collections::HashMap;
use std::net::IpAddr;

/// A value in the data section.
#[derive(Clone, Debug, PartialEq)]
pub enum MmdbValue {
    /// UTF-8 string (type 2).
    Str(String),
    /// Double (type 3).
    Double(f64),
    /// Unsigned 16-bit integer (type 5).
    U16(u16),
    /// Unsigned 32-bit integer (type 6).
    U32(u32),
    /// Unsigned 64-bit integer (type 9).
    U64(u64),
    /// Boolean (type 14).
    Bool(bool),
    /// Map with string keys (type 7), in the given order.
    Map(Vec<(String, MmdbValue)>),
    /// Array (type 11).
    Array(Vec<MmdbValue>),
}

impl MmdbValue {
    /// Builds a map from `(&str, value)` pairs.
    pub fn map<const N: usize>(pairs: [(&str, MmdbValue); N]) -> MmdbValue {
        MmdbValue::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// Builds a string value.
    pub fn str(s: &str) -> MmdbValue {
        MmdbValue::Str(s.to_owned())
    }
}

/// Errors from [`MmdbWriter`].
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The prefix length does not fit the address family.
    #[error("invalid network {ip}/{prefix}: prefix must be <= 32 for IPv4 and <= 128 for IPv6")]
    BadPrefix {
        /// Network address.
        ip: IpAddr,
        /// Prefix length given.
        prefix: u8,
    },
    /// An IPv6 network was inserted into an IPv4-only database.
    #[error("cannot insert IPv6 network {0} into an IPv4-only database; use MmdbWriter::new_ipv6")]
    V6InV4Db(IpAddr),
    /// The database is too large for 24-bit records.
    #[error("database too large for 24-bit records; use fewer networks in the fixture")]
    TooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rec {
    Empty,
    Node(usize),
    Data(usize),
}

/// Builds a `.mmdb` file in memory. See the module docs.
#[derive(Debug)]
pub struct MmdbWriter {
    ip_version: u16,
    database_type: String,
    build_epoch: u64,
    description: Vec<(String, String)>,
    nodes: Vec<[Rec; 2]>,
    /// Encoded data records, de-duplicated by their encoding.
    data: Vec<Vec<u8>>,
    data_index: HashMap<Vec<u8>, usize>,
}

impl MmdbWriter {
    /// An IPv6 database (IPv4 networks are stored under `::/96`, as MaxMind does).
    pub fn new_ipv6(database_type: &str) -> MmdbWriter {
        MmdbWriter::new(6, database_type)
    }

    /// An IPv4-only database.
    pub fn new_ipv4(database_type: &str) -> MmdbWriter {
        MmdbWriter::new(4, database_type)
    }

    fn new(ip_version: u16, database_type: &str) -> MmdbWriter {
        MmdbWriter {
            ip_version,
            database_type: database_type.to_owned(),
            build_epoch: 1_700_000_000,
            description: vec![("en".to_owned(), format!("{database_type} test fixture"))],
            nodes: vec![[Rec::Empty, Rec::Empty]],
            data: Vec::new(),
            data_index: HashMap::new(),
        }
    }

    /// Sets the metadata `description` map to a single English entry
    /// (an empty string leaves the map empty, as ip-location-db files do).
    pub fn description(mut self, en: &str) -> MmdbWriter {
        self.description = if en.is_empty() { Vec::new() } else { vec![("en".to_owned(), en.to_owned())] };
        self
    }

    /// Maps the network `ip/prefix` to `value`.
    pub fn insert(&mut self, ip: IpAddr, prefix: u8, value: &MmdbValue) -> Result<(), WriterError> {
        let (bits, depth): (u128, u8) = match (ip, self.ip_version) {
            (IpAddr::V4(v4), 4) => {
                if prefix > 32 {
                    return Err(WriterError::BadPrefix { ip, prefix });
                }
                ((u128::from(u32::from(v4))) << 96, prefix)
            }
            (IpAddr::V4(v4), _) => {
                if prefix > 32 {
                    return Err(WriterError::BadPrefix { ip, prefix });
                }
                (u128::from(u32::from(v4)), prefix + 96)
            }
            (IpAddr::V6(_), 4) => return Err(WriterError::V6InV4Db(ip)),
            (IpAddr::V6(v6), _) => {
                if prefix > 128 {
                    return Err(WriterError::BadPrefix { ip, prefix });
                }
                (u128::from(v6), prefix)
            }
        };
        let data_idx = self.intern(value);
        // With a 32-bit tree, the address bits are in the top 32 bits of `bits`.
        let mut node = 0usize;
        let mut i = 0u8;
        while i < depth {
            let bit = ((bits >> (127 - u32::from(i))) & 1) as usize;
            if i + 1 == depth {
                // Last bit: the record holds the data (replacing any subtree).
                self.nodes[node][bit] = Rec::Data(data_idx);
                return Ok(());
            }
            node = match self.nodes[node][bit] {
                Rec::Node(n) => n,
                other => {
                    // Split: a new node whose both halves inherit what was there.
                    let n = self.nodes.len();
                    self.nodes.push([other, other]);
                    self.nodes[node][bit] = Rec::Node(n);
                    n
                }
            };
            i += 1;
        }
        // prefix 0: the whole address space.
        self.nodes[0] = [Rec::Data(data_idx), Rec::Data(data_idx)];
        Ok(())
    }

    fn intern(&mut self, value: &MmdbValue) -> usize {
        let mut enc = Vec::new();
        encode(value, &mut enc);
        if let Some(&i) = self.data_index.get(&enc) {
            return i;
        }
        let i = self.data.len();
        self.data.push(enc.clone());
        self.data_index.insert(enc, i);
        i
    }

    /// Serialises the database.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriterError> {
        let node_count = self.nodes.len();
        let mut data_offsets = Vec::with_capacity(self.data.len());
        let mut data_section = Vec::new();
        for d in &self.data {
            data_offsets.push(data_section.len());
            data_section.extend_from_slice(d);
        }
        let max = (1usize << 24) - 1;
        let record = |r: Rec| -> Result<u32, WriterError> {
            let v = match r {
                Rec::Empty => node_count,
                Rec::Node(n) => n,
                Rec::Data(d) => node_count + 16 + data_offsets[d],
            };
            if v > max {
                return Err(WriterError::TooLarge);
            }
            u32::try_from(v).map_err(|_| WriterError::TooLarge)
        };
        let mut out = Vec::with_capacity(node_count * 6 + 16 + data_section.len() + 256);
        for n in &self.nodes {
            for r in n {
                let v = record(*r)?;
                out.extend_from_slice(&v.to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data_section);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let node_count_u32 = u32::try_from(node_count).map_err(|_| WriterError::TooLarge)?;
        let metadata = MmdbValue::Map(vec![
            ("binary_format_major_version".into(), MmdbValue::U16(2)),
            ("binary_format_minor_version".into(), MmdbValue::U16(0)),
            ("build_epoch".into(), MmdbValue::U64(self.build_epoch)),
            ("database_type".into(), MmdbValue::Str(self.database_type.clone())),
            (
                "description".into(),
                MmdbValue::Map(self.description.iter().map(|(k, v)| (k.clone(), MmdbValue::Str(v.clone()))).collect()),
            ),
            ("ip_version".into(), MmdbValue::U16(self.ip_version)),
            ("languages".into(), MmdbValue::Array(vec![MmdbValue::str("en")])),
            ("node_count".into(), MmdbValue::U32(node_count_u32)),
            ("record_size".into(), MmdbValue::U16(24)),
        ]);
        encode(&metadata, &mut out);
        Ok(out)
    }
}

/// Type numbers of the MaxMind DB data section.
const T_STR: u8 = 2;
const T_DOUBLE: u8 = 3;
const T_U16: u8 = 5;
const T_U32: u8 = 6;
const T_MAP: u8 = 7;
const T_U64: u8 = 9;
const T_ARRAY: u8 = 11;
const T_BOOL: u8 = 14;

fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (size_bits, ext): (u8, Vec<u8>) = if size < 29 {
        (size as u8, Vec::new())
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65_536 {
        let s = (size - 285) as u16;
        (30, s.to_be_bytes().to_vec())
    } else {
        let s = (size - 65_821) as u32;
        (31, s.to_be_bytes()[1..].to_vec())
    };
    if ty <= 7 {
        out.push((ty << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(ty - 7);
    }
    out.extend_from_slice(&ext);
}

fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, ty, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(v: &MmdbValue, out: &mut Vec<u8>) {
    match v {
        MmdbValue::Str(s) => {
            control(out, T_STR, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        MmdbValue::Double(d) => {
            control(out, T_DOUBLE, 8);
            out.extend_from_slice(&d.to_be_bytes());
        }
        MmdbValue::U16(n) => uint(out, T_U16, u64::from(*n)),
        MmdbValue::U32(n) => uint(out, T_U32, u64::from(*n)),
        MmdbValue::U64(n) => uint(out, T_U64, *n),
        MmdbValue::Bool(b) => control(out, T_BOOL, usize::from(*b)),
        MmdbValue::Map(pairs) => {
            control(out, T_MAP, pairs.len());
            for (k, val) in pairs {
                encode(&MmdbValue::Str(k.clone()), out);
                encode(val, out);
            }
        }
        MmdbValue::Array(items) => {
            control(out, T_ARRAY, items.len());
            for item in items {
                encode(item, out);
            }
        }
    }
}
