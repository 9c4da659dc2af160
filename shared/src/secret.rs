//! Who may use an upload. An authenticated caller's uploads are bound to the authorizer's `sub`. Where the deployment
//! allows anonymous callers, they all share one owner, so each anonymous upload is bound to a secret instead: drawn at
//! random when the upload is created, handed out once with the first chunk's answer, and required with every later
//! request for it. Only the secret's SHA-256 is stored, and it is compared in constant time: whoever reads the table
//! or times the answers learns nothing that lets them use the upload.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::md5state::hex;

/// The owner of every anonymous upload.
pub const ANONYMOUS_OWNER: &str = "anonymous";
/// The request and response header that carries an upload's secret.
pub const HEADER: &str = "x-upload-secret";
/// The body field that carries it, for clients that can only add form fields.
pub const FIELD: &str = "upload_secret";

const SECRET_BYTES: usize = 32;

/// An upload's secret: 32 random bytes, written as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadSecret([u8; SECRET_BYTES]);

/// The SHA-256 of a secret's bytes: what the upload's record keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl UploadSecret {
    /// A fresh secret from the thread's CSPRNG (ChaCha, seeded by the operating system).
    pub fn generate() -> Self {
        UploadSecret(rand::random())
    }

    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let malformed =
            || ApiError::BadRequest(format!("{FIELD} must be the {} hex digits the service gave", 2 * SECRET_BYTES));
        let digits = text.as_bytes();
        if digits.len() != 2 * SECRET_BYTES {
            return Err(malformed());
        }
        let mut bytes = [0u8; SECRET_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| malformed())?;
            if !pair.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(malformed());
            }
            *byte = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
        }
        Ok(UploadSecret(bytes))
    }

    /// The text the client is given and sends back.
    pub fn reveal(&self) -> String {
        hex(&self.0)
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0).into())
    }
}

/// Never printed: a secret must not reach a log through a `{:?}`.
impl std::fmt::Debug for UploadSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSecret(..)")
    }
}

impl SecretHash {
    /// A stored hash; `None` if the bytes cannot be one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(SecretHash)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `secret` is the one this hash was made from, in a time that does not depend on where they differ.
    pub fn admits(&self, secret: &UploadSecret) -> bool {
        self.0.ct_eq(&secret.hash().0).into()
    }
}

/// The network an anonymous caller calls from, against which its uploads are counted: its IPv4 address, or the /64
/// its IPv6 address is in (an IPv6 client is usually given a whole /64, and could move through it at will).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network(String);

impl Network {
    /// The network of an address as API Gateway gives it (`requestContext.http.sourceIp`); `None` if it is none.
    pub fn of(address: &str) -> Option<Network> {
        let text = match address.trim().parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        };
        Some(Network(text))
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who makes a request, as the operations need to know it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authenticated: the authorizer's `sub`, which binds their uploads; a secret they send is not looked at.
    Principal(String),
    /// Anonymous, with the secret of the upload: a fresh one when the request creates it, else the one it sent; and,
    /// creating one, the network it calls from.
    Anonymous(UploadSecret, Option<Network>),
}

impl Caller {
    /// The caller of a request that creates an upload: an anonymous one is given a fresh secret for it, and its
    /// upload counts against its network's limits.
    pub fn creating(principal: Option<String>, network: Option<Network>) -> Self {
        match principal {
            Some(sub) => Caller::Principal(sub),
            None => Caller::Anonymous(UploadSecret::generate(), network),
        }
    }

    /// The network an anonymous caller creating an upload calls from.
    pub fn network(&self) -> Option<&Network> {
        match self {
            Caller::Anonymous(_, network) => network.as_ref(),
            Caller::Principal(_) => None,
        }
    }

    /// The caller of a request that names an upload. Anonymous and without a secret, it names nothing it may use:
    /// 404, as for an unknown id.
    pub fn naming(principal: Option<String>, secret: Option<UploadSecret>) -> Result<Self, ApiError> {
        match (principal, secret) {
            (Some(sub), _) => Ok(Caller::Principal(sub)),
            (None, Some(secret)) => Ok(Caller::Anonymous(secret, None)),
            (None, None) => Err(ApiError::NotFound),
        }
    }

    pub fn owner(&self) -> &str {
        match self {
            Caller::Principal(sub) => sub,
            Caller::Anonymous(..) => ANONYMOUS_OWNER,
        }
    }

    /// The secret a new upload of this caller is bound to (none for authenticated callers).
    pub fn secret(&self) -> Option<&UploadSecret> {
        match self {
            Caller::Principal(_) => None,
            Caller::Anonymous(secret, _) => Some(secret),
        }
    }

    /// The hash an upload must hold for this caller to use it; `None`: it must hold none. For conditional writes,
    /// which DynamoDB compares itself (timing reveals at most bits of a hash, from which the secret cannot be found).
    pub fn secret_hash(&self) -> Option<SecretHash> {
        self.secret().map(UploadSecret::hash)
    }

    /// Whether this caller may use an upload with this owner and secret hash.
    pub fn may_use(&self, owner: &str, secret_hash: Option<&SecretHash>) -> bool {
        // The owner is not secret (it is the caller's own sub, or `anonymous`); the hash comparison is what must not
        // leak, and it runs whatever the owner.
        let secret_matches = match (self, secret_hash) {
            (Caller::Anonymous(secret, _), Some(hash)) => hash.admits(secret),
            (Caller::Principal(_), None) => true,
            // An anonymous caller never uses an upload without a secret, nor a principal one with a secret (a token
            // whose sub happens to be `anonymous`).
            (Caller::Anonymous(..), None) | (Caller::Principal(_), Some(_)) => false,
        };
        secret_matches && owner == self.owner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_back_from_their_text() {
        let secret = UploadSecret::generate();
        let text = secret.reveal();
        assert_eq!(text.len(), 64);
        assert_eq!(UploadSecret::parse(&text).unwrap(), secret);
        assert_ne!(UploadSecret::generate(), secret);
        for bad in [
            "",
            "abc",
            &text[..63],
            &format!("{text}0"),
            &text.to_uppercase(),
            &"g".repeat(64),
            &"é".repeat(32),
            &format!(" {}", &text[1..]),
        ] {
            assert!(UploadSecret::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format!("{secret:?}"), "UploadSecret(..)");
    }

    #[test]
    fn the_hash_is_sha256_of_the_bytes() {
        let secret = UploadSecret::parse(&"00".repeat(32)).unwrap();
        // SHA-256 of 32 zero bytes.
        assert_eq!(hex(secret.hash().as_bytes()), "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
        assert!(secret.hash().admits(&secret));
        assert!(!secret.hash().admits(&UploadSecret::generate()));
        assert_eq!(SecretHash::from_bytes(secret.hash().as_bytes()), Some(secret.hash()));
        assert_eq!(SecretHash::from_bytes(&[0; 31]), None);
    }

    #[test]
    fn anonymous_uploads_need_their_secret() {
        let secret = UploadSecret::generate();
        let hash = secret.hash();
        let anonymous = Caller::Anonymous(secret.clone(), None);
        assert!(anonymous.may_use(ANONYMOUS_OWNER, Some(&hash)));
        assert!(!Caller::Anonymous(UploadSecret::generate(), None).may_use(ANONYMOUS_OWNER, Some(&hash)));
        assert!(!anonymous.may_use(ANONYMOUS_OWNER, None));
        assert!(!anonymous.may_use("alice", Some(&hash)));
        assert!(matches!(Caller::naming(None, None), Err(ApiError::NotFound)));
        // A token whose sub is `anonymous` is not the anonymous owner's secret.
        assert!(!Caller::Principal(ANONYMOUS_OWNER.into()).may_use(ANONYMOUS_OWNER, Some(&hash)));
    }

    #[test]
    fn principals_are_bound_by_their_sub() {
        let alice = Caller::naming(Some("alice".into()), Some(UploadSecret::generate())).unwrap();
        assert!(alice.may_use("alice", None));
        assert!(!alice.may_use("bob", None));
        assert_eq!(alice.secret_hash(), None);
        assert!(Caller::creating(Some("alice".into()), None).secret().is_none());
        assert!(Caller::creating(None, None).secret().is_some());
    }

    #[test]
    fn anonymous_callers_are_counted_by_their_network() {
        let network = |address: &str| Network::of(address).map(|n| n.to_string());
        assert_eq!(network("203.0.113.7"), Some("203.0.113.7".into()));
        assert_eq!(network("::ffff:203.0.113.7"), Some("203.0.113.7".into()));
        // Every address of one /64 is one network.
        assert_eq!(network("2001:db8:1:2:aaaa::1"), Some("2001:db8:1:2::/64".into()));
        assert_eq!(network("2001:db8:1:2:ffff:1:2:3"), Some("2001:db8:1:2::/64".into()));
        assert_eq!(network("test-invoke-source-ip"), None);
        let creating = Caller::creating(None, Network::of("198.51.100.1"));
        assert_eq!(creating.network().map(ToString::to_string), Some("198.51.100.1".into()));
        assert_eq!(Caller::creating(Some("alice".into()), Network::of("198.51.100.1")).network(), None);
    }
}
