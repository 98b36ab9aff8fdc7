//! The self-signed certificates of `fanout demo --tls` (and of the bench's TLS scenario):
//! a CA, and a server certificate it issued for `localhost` and `127.0.0.1`, both ECDSA
//! P-256, made with rcgen at start and written as PEM files to a directory. A client
//! trusts the CA's file (`curl --cacert`), the listener serves the other two.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The names the server certificate holds: what a client on this machine dials.
pub const DEMO_TLS_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// How long the demo certificates are valid, from a day before they were made (so a
/// client whose clock is a little behind accepts them too).
const VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Where the demo certificates were written.
#[derive(Debug, Clone)]
pub struct DemoCertificates {
    /// The directory holding the three files.
    pub dir: PathBuf,
    /// The CA's certificate (`ca.pem`): what a client trusts.
    pub ca: PathBuf,
    /// The server certificate (`cert.pem`), for `[server.tls] cert`.
    pub cert: PathBuf,
    /// Its private key (`key.pem`, PKCS#8, readable by the owner only), for `[server.tls] key`.
    pub key: PathBuf,
}

/// Why the demo certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DemoTlsError {
    #[error("cannot make the demo certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(
        "cannot write the demo certificates to {path}: {source}; check that the directory is writable"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DemoCertificates {
    /// A directory of its own under the system's temporary directory, named after this
    /// process, for [`DemoCertificates::make`].
    pub fn scratch_dir() -> PathBuf {
        std::env::temp_dir().join(format!("fanout-demo-tls-{}", std::process::id()))
    }

    /// Makes a CA and a server certificate it signs for [`DEMO_TLS_NAMES`], and writes
    /// them to `dir` (created if missing; files of the same names are replaced).
    pub fn make(dir: &Path) -> Result<Self, DemoTlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        };
        // rcgen takes `time`'s dates: reached from its own `date_time_ymd` plus a std
        // `Duration`, so fanout needs no date crate of its own.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch.saturating_sub(DAY);
        let not_after = not_before + VALIDITY;

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fanout demo CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.not_before = not_before;
        ca_params.not_after = not_after;
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let names: Vec<String> = DEMO_TLS_NAMES.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, DEMO_TLS_NAMES[0]);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &issuer)?;

        let written = Self {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DemoTlsError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::write(&written.ca, ca_cert.pem()).map_err(io(&written.ca))?;
        std::fs::write(&written.cert, cert.pem()).map_err(io(&written.cert))?;
        write_private(&written.key, &key.serialize_pem()).map_err(io(&written.key))?;
        Ok(written)
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
