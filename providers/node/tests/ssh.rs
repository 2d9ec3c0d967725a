//! `SshTransport` against a real OpenSSH server started by the harness:
//! commands, file operations (modes, atomicity, hostile names), host key
//! checks (known_hosts, hashed entries, pins) and key authentication.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mirrorplan_harness::{Sshd, SshdOptions};
use mirrorplan_node::{fingerprint, NodeError, SshError, SshOptions, SshTransport, Transport};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn options(sshd: &Sshd) -> SshOptions {
    let mut o = SshOptions::new(sshd.addr().ip().to_string());
    o.port = sshd.port();
    o.private_key = Some(sshd.client_key_path());
    o.known_hosts = Some(sshd.known_hosts_path());
    o.use_agent = false;
    o.timeout = Duration::from_secs(30);
    o
}

fn ssh_error(e: NodeError) -> SshError {
    match e {
        NodeError::Ssh(e) => *e,
        other => panic!("expected an SSH error, got {other:?}"),
    }
}

async fn connect_err(opts: &SshOptions) -> SshError {
    match SshTransport::connect(opts).await {
        Ok(t) => panic!("connection to {} should have been refused", t.target()),
        Err(e) => ssh_error(e),
    }
}

fn host_fingerprint(sshd: &Sshd) -> Result<String, Box<dyn std::error::Error>> {
    let key = russh::keys::ssh_key::PublicKey::from_openssh(sshd.host_public_key())?;
    Ok(fingerprint(&key))
}

fn keygen(path: &Path, passphrase: &str) -> TestResult {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", "test", "-N", passphrase, "-f"])
        .arg(path)
        .status()?;
    assert!(st.success());
    Ok(())
}

fn node_path(p: &Path) -> Result<&str, Box<dyn std::error::Error>> {
    Ok(p.to_str().ok_or("non-UTF-8 temp path")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_commands_and_captures_status() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let t = SshTransport::connect(&options(&sshd)).await?;
    assert_eq!(t.describe(), format!("ssh:root@{}", sshd.addr()));
    assert!(!t.uses_sudo());

    // every word arrives literally, quotes and `$()` included
    let out = t
        .run(&["printf", "%s|", "a b", "$(id)", "it's", "", "`x`"])
        .await?;
    assert!(out.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout)?, "a b|$(id)|it's||`x`|");

    let out = t.run(&["sh", "-c", "echo oops >&2; exit 3"]).await?;
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stderr, b"oops\n");
    assert!(out.stdout.is_empty());

    let out = t.run(&["sh", "-c", "kill -TERM $$"]).await?;
    assert_eq!(out.status, None, "killed by a signal");

    assert!(matches!(t.run(&[]).await, Err(NodeError::EmptyCommand)));

    // one connection, many channels, some at the same time (more than
    // sshd's MaxSessions of 10)
    let runs = (0..24).map(|i| {
        let t = t.clone();
        async move {
            let n = i.to_string();
            let out = t.run(&["echo", &n]).await?;
            Ok::<_, NodeError>(String::from_utf8_lossy(&out.stdout).trim() == n)
        }
    });
    for ok in futures::future::join_all(runs).await {
        assert!(ok?);
    }
    t.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_with_modes_and_hostile_names() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let t = SshTransport::connect(&options(&sshd)).await?;
    let dir = tempfile::Builder::new().prefix("mp-node-ssh-").tempdir()?;
    let canary = dir.path().join("pwned");
    let sub = dir.path().join("new dir $(touch pwned)");
    let file = sub.join("it's a \"file\" $(touch pwned) `touch pwned`.toml");
    let path = node_path(&file)?;
    let content = format!(
        "x = \"$(touch {})\"\n'; touch {} #",
        canary.display(),
        canary.display()
    );

    assert_eq!(t.read_file(path).await?, None);
    assert!(!t.remove_file(path).await?);

    t.write_file_atomic(path, content.as_bytes(), 0o640).await?;
    assert_eq!(t.read_file(path).await?, Some(content.clone().into_bytes()));
    assert_eq!(std::fs::read_to_string(&file)?, content);
    assert_eq!(
        std::fs::metadata(&file)?.permissions().mode() & 0o7777,
        0o640
    );
    assert!(!canary.exists(), "user data was executed");

    // overwrite: new mode, binary content with NUL bytes, no newline, large
    // enough to need many SSH packets and window adjustments
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    t.write_file_atomic(path, &big, 0o600).await?;
    assert_eq!(
        std::fs::metadata(&file)?.permissions().mode() & 0o7777,
        0o600
    );
    assert!(t.read_file(path).await? == Some(big));

    // empty is not missing
    t.write_file_atomic(path, b"", 0o644).await?;
    assert_eq!(t.read_file(path).await?, Some(Vec::new()));

    // no temporary files left behind
    let names: Vec<String> = std::fs::read_dir(&sub)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names.len(), 1, "{names:?}");

    assert!(t.remove_file(path).await?);
    assert!(!file.exists());
    assert_eq!(t.read_file(path).await?, None);
    assert!(!canary.exists(), "user data was executed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_temp_files_are_cleaned_and_errors_carry_stderr() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let t = SshTransport::connect(&options(&sshd)).await?;
    let dir = tempfile::Builder::new().prefix("mp-node-ssh-").tempdir()?;
    let file = dir.path().join("hosts.toml");
    // left by an interrupted earlier write
    let stale = dir.path().join(format!(
        ".hosts.toml.{}.Ab12Cd",
        mirrorplan_node::TEMP_MARKER
    ));
    std::fs::write(&stale, "half")?;
    let other = dir.path().join("keep.me");
    std::fs::write(&other, "x")?;
    t.write_file_atomic(node_path(&file)?, b"server = \"x\"\n", 0o644)
        .await?;
    assert!(!stale.exists());
    assert!(other.exists());

    // a directory where a file is expected: the error names the operation
    // and carries the node's stderr, never the contents being written
    let as_dir = dir.path().join("adir");
    std::fs::create_dir(&as_dir)?;
    let err = ssh_error(
        t.read_file(node_path(&as_dir)?)
            .await
            .err()
            .ok_or("reading a directory should fail")?,
    );
    let msg = err.to_string();
    assert!(matches!(err, SshError::Remote { .. }), "{msg}");
    assert!(
        msg.contains("reading") && msg.contains("Is a directory"),
        "{msg}"
    );

    let blocked = dir.path().join("keep.me").join("under-a-file");
    let err = t
        .write_file_atomic(node_path(&blocked)?, b"TOP-SECRET-CONTENT", 0o600)
        .await
        .err()
        .ok_or("writing under a regular file should fail")?;
    let msg = err.to_string();
    assert!(
        msg.contains("writing") && msg.contains("under-a-file"),
        "{msg}"
    );
    assert!(!msg.contains("TOP-SECRET-CONTENT"), "{msg}");

    assert!(matches!(
        t.read_file("relative/path").await,
        Err(NodeError::PathNotAllowed { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_refused() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let dir = tempfile::tempdir()?;
    let kh = dir.path().join("known_hosts");
    // another host's entry only
    std::fs::write(&kh, format!("[127.0.0.1]:1 {}\n", sshd.host_public_key()))?;
    let mut o = options(&sshd);
    o.known_hosts = Some(kh.clone());
    let err = connect_err(&o).await;
    let msg = err.to_string();
    assert!(matches!(err, SshError::UnknownHost { .. }), "{msg}");
    assert!(
        msg.contains(&format!("[{}]:{}", sshd.addr().ip(), sshd.port())),
        "{msg}"
    );
    assert!(msg.contains(&host_fingerprint(&sshd)?), "{msg}");
    assert!(msg.contains(&kh.display().to_string()), "{msg}");

    // a missing known_hosts file is the same as an empty one
    o.known_hosts = Some(dir.path().join("absent"));
    assert!(matches!(
        connect_err(&o).await,
        SshError::UnknownHost { .. }
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let dir = tempfile::tempdir()?;
    keygen(&dir.path().join("other"), "")?;
    let other_pub = std::fs::read_to_string(dir.path().join("other.pub"))?;
    let kh = dir.path().join("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "# old key\n[{}]:{} {}",
            sshd.addr().ip(),
            sshd.port(),
            other_pub
        ),
    )?;
    let mut o = options(&sshd);
    o.known_hosts = Some(kh);
    let err = connect_err(&o).await;
    let msg = err.to_string();
    assert!(matches!(err, SshError::HostKeyChanged { .. }), "{msg}");
    assert!(msg.contains("HAS CHANGED"), "{msg}");
    assert!(msg.contains(&host_fingerprint(&sshd)?), "{msg}");
    assert!(msg.contains("line(s) 2"), "{msg}");
    let diag: &dyn miette::Diagnostic = &err;
    assert_eq!(
        diag.code().map(|c| c.to_string()).as_deref(),
        Some("mirrorplan::node::ssh::host_key_changed")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_are_accepted() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let dir = tempfile::tempdir()?;
    let kh = dir.path().join("known_hosts");
    std::fs::copy(sshd.known_hosts_path(), &kh)?;
    let st = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()?;
    assert!(st.status.success(), "{st:?}");
    let hashed = std::fs::read_to_string(&kh)?;
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let mut o = options(&sshd);
    o.known_hosts = Some(kh);
    let t = SshTransport::connect(&o).await?;
    assert!(t.run(&["true"]).await?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_host_keys() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let dir = tempfile::tempdir()?;
    let mut o = options(&sshd);
    // the pin wins over a known_hosts that does not know the host
    o.known_hosts = Some(dir.path().join("empty"));
    o.host_key_pin = Some(format!("{} some comment", sshd.host_public_key()));
    SshTransport::connect(&o).await?;
    o.host_key_pin = Some(host_fingerprint(&sshd)?);
    SshTransport::connect(&o).await?;

    keygen(&dir.path().join("other"), "")?;
    o.host_key_pin = Some(std::fs::read_to_string(dir.path().join("other.pub"))?);
    let err = connect_err(&o).await;
    let msg = err.to_string();
    assert!(matches!(err, SshError::HostKeyPinMismatch { .. }), "{msg}");
    assert!(msg.contains(&host_fingerprint(&sshd)?), "{msg}");

    o.host_key_pin = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    assert!(matches!(
        connect_err(&o).await,
        SshError::HostKeyPinMismatch { .. }
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_authentication() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let dir = tempfile::tempdir()?;

    // the authorised key, re-encrypted with a passphrase
    let enc = dir.path().join("enc_key");
    std::fs::copy(sshd.client_key_path(), &enc)?;
    std::fs::set_permissions(&enc, std::fs::Permissions::from_mode(0o600))?;
    let st = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "correct horse", "-f"])
        .arg(&enc)
        .output()?;
    assert!(st.status.success(), "{st:?}");

    let mut o = options(&sshd);
    o.private_key = Some(enc.clone());
    o.passphrase = Some("correct horse".into());
    let t = SshTransport::connect(&o).await?;
    assert!(t.run(&["true"]).await?.success());

    o.passphrase = None;
    let err = connect_err(&o).await;
    assert!(matches!(err, SshError::PrivateKey { .. }), "{err}");
    assert!(err.to_string().contains("encrypted"), "{err}");

    o.passphrase = Some("wrong-battery-staple".into());
    let err = connect_err(&o).await;
    let msg = format!("{err} {err:?}");
    assert!(matches!(err, SshError::PrivateKey { .. }), "{msg}");
    assert!(!msg.contains("wrong-battery-staple"), "{msg}");

    // a key the server does not know
    let stranger = dir.path().join("stranger");
    keygen(&stranger, "")?;
    o.private_key = Some(stranger.clone());
    o.passphrase = None;
    let err = connect_err(&o).await;
    let msg = err.to_string();
    assert!(matches!(err, SshError::Auth { .. }), "{msg}");
    assert!(msg.contains(&stranger.display().to_string()), "{msg}");

    o.private_key = Some(PathBuf::from("/nonexistent/key"));
    assert!(matches!(connect_err(&o).await, SshError::PrivateKey { .. }));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_name_the_target() -> TestResult {
    // a port nobody listens on: take a free one from a listener we close
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let mut o = SshOptions::new("127.0.0.1");
    o.port = port;
    o.use_agent = false;
    o.known_hosts = Some(PathBuf::from("/nonexistent/known_hosts"));
    let err = connect_err(&o).await;
    let msg = err.to_string();
    assert!(matches!(err, SshError::Connect { .. }), "{msg}");
    assert!(msg.contains(&format!("root@127.0.0.1:{port}")), "{msg}");

    o.host_key_pin = Some("garbage".into());
    assert!(matches!(connect_err(&o).await, SshError::Options { .. }));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_forwarding() -> TestResult {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sshd = Sshd::start(SshdOptions::default())?;
    let t = SshTransport::connect(&options(&sshd)).await?;
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&sock)?;
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await?;
        buf.reverse();
        s.write_all(&buf).await?;
        Ok::<_, std::io::Error>(())
    });
    let mut stream = t.open_unix_socket(node_path(&sock)?).await?;
    stream.write_all(b"hello").await?;
    let mut back = [0u8; 5];
    stream.read_exact(&mut back).await?;
    assert_eq!(&back, b"olleh");
    server.await??;

    let missing = dir.path().join("missing.sock");
    let err = ssh_error(
        t.open_unix_socket(node_path(&missing)?)
            .await
            .err()
            .ok_or("a missing socket should fail")?,
    );
    let msg = err.to_string();
    assert!(matches!(err, SshError::StreamLocal { .. }), "{msg}");
    assert!(msg.contains("missing.sock"), "{msg}");
    Ok(())
}

/// `write_files_then_run` and `read_files_and_run`: files and a command
/// with one remote command each; the command runs only after every file is
/// in place, and only when they all were written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_files_with_a_command() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let t = SshTransport::connect(&options(&sshd)).await?;
    let dir = tempfile::Builder::new().prefix("mp-node-ssh-").tempdir()?;
    let a = dir.path().join("it's $(a).toml");
    let b = dir.path().join("sub `dir`").join("b.crt");
    let (a_s, b_s) = (node_path(&a)?, node_path(&b)?);
    let files: [(&str, &[u8], u32); 2] = [(a_s, b"a = 1\n", 0o644), (b_s, b"secret", 0o600)];
    // the command sees both files in place; its status is reported
    let out = t
        .write_files_then_run(&files, &["sh", "-c", "cat \"$0\" \"$1\"; exit 5", a_s, b_s])
        .await?;
    assert_eq!(out.status, Some(5), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "a = 1\nsecret");
    assert_eq!(std::fs::metadata(&b)?.permissions().mode() & 0o7777, 0o600);
    // a write that fails (a file where a directory should be): no command
    let marker = dir.path().join("ran");
    std::fs::write(dir.path().join("file"), "")?;
    let blocked = dir.path().join("file").join("y");
    let bad: [(&str, &[u8], u32); 2] = [
        (a_s, b"a = 2\n", 0o644),
        (node_path(&blocked)?, b"y", 0o644),
    ];
    let err = t
        .write_files_then_run(&bad, &["touch", node_path(&marker)?])
        .await;
    assert!(err.is_err(), "{err:?}");
    assert!(!marker.exists(), "the command ran after a failed write");
    assert_eq!(
        std::fs::read_to_string(&a)?,
        "a = 1\n",
        "a file was replaced"
    );
    // reads and a command together
    let missing = dir.path().join("missing");
    let (read, out) = t
        .read_files_and_run(&[a_s, node_path(&missing)?, b_s], &["printf", "v%s", "2.0"])
        .await?;
    assert_eq!(
        read,
        vec![Some(b"a = 1\n".to_vec()), None, Some(b"secret".to_vec())]
    );
    let out = out?;
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, b"v2.0");
    // a command that fails does not fail the read
    let (read, out) = t
        .read_files_and_run(&[a_s], &["sh", "-c", "echo no >&2; exit 2"])
        .await?;
    assert_eq!(read, vec![Some(b"a = 1\n".to_vec())]);
    let out = out?;
    assert_eq!((out.status, out.stderr.as_slice()), (Some(2), &b"no\n"[..]));
    Ok(())
}

/// `write_files_if_unchanged`: the write refuses, leaving every file as it
/// was and running nothing, when a file changed between the read and the
/// write (changed, created or removed); with the files as read it writes
/// and runs the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_write_refuses_files_changed_since_read() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let t = SshTransport::connect(&options(&sshd)).await?;
    let dir = tempfile::Builder::new().prefix("mp-node-ssh-").tempdir()?;
    let a = dir.path().join("it's $(a).toml");
    let b = dir.path().join("sub `dir`").join("b.crt");
    let c = dir.path().join("c new");
    let (a_s, b_s, c_s) = (node_path(&a)?, node_path(&b)?, node_path(&c)?);
    std::fs::write(&a, "a = 1\n")?;
    std::fs::create_dir_all(dir.path().join("sub `dir`"))?;
    std::fs::write(&b, "old b")?;
    let read = t.read_files(&[a_s, b_s, c_s]).await?;
    assert_eq!(read[2], None);
    let expected: Vec<Option<&[u8]>> = read.iter().map(|r| r.as_deref()).collect();
    let files: [(&str, &[u8], u32); 3] = [
        (a_s, b"a = 2\n", 0o644),
        (b_s, b"new b", 0o600),
        (c_s, b"c", 0o644),
    ];
    let marker = dir.path().join("ran");
    let touch = ["touch", node_path(&marker)?];
    // someone else edits b and creates c after the read
    std::fs::write(&b, "edited b")?;
    std::fs::write(&c, "someone's c")?;
    let err = t
        .write_files_if_unchanged(&files, &expected, Some(&touch))
        .await;
    match err {
        Err(NodeError::ChangedSinceRead { paths }) => {
            assert_eq!(paths, format!("{b_s}, {c_s}"));
            let msg = NodeError::ChangedSinceRead { paths }.to_string();
            assert!(msg.ends_with("changed on the node since it was read; run plan again"));
        }
        other => panic!("expected ChangedSinceRead, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&a)?, "a = 1\n", "a was replaced");
    assert_eq!(std::fs::read_to_string(&b)?, "edited b");
    assert_eq!(std::fs::read_to_string(&c)?, "someone's c");
    assert!(!marker.exists(), "the command ran after a refused write");
    let leftovers: Vec<_> = walk(dir.path())?
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("mirrorplan-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // a file removed since the read is a change too
    std::fs::remove_file(&c)?;
    let read = t.read_files(&[a_s, b_s, c_s]).await?;
    std::fs::remove_file(&a)?;
    let expected: Vec<Option<&[u8]>> = read.iter().map(|r| r.as_deref()).collect();
    let err = t.write_files_if_unchanged(&files, &expected, None).await;
    assert!(
        matches!(&err, Err(NodeError::ChangedSinceRead { paths }) if paths == a_s),
        "{err:?}"
    );
    assert!(!a.exists() && !c.exists());
    assert_eq!(std::fs::read_to_string(&b)?, "edited b");
    // unchanged since the read: written, then the command runs
    let read = t.read_files(&[a_s, b_s, c_s]).await?;
    let expected: Vec<Option<&[u8]>> = read.iter().map(|r| r.as_deref()).collect();
    let out = t
        .write_files_if_unchanged(&files, &expected, Some(&touch))
        .await?;
    assert!(out.is_some_and(|o| o.success()));
    assert!(marker.exists());
    assert_eq!(std::fs::read_to_string(&a)?, "a = 2\n");
    assert_eq!(std::fs::read_to_string(&b)?, "new b");
    assert_eq!(std::fs::metadata(&b)?.permissions().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read_to_string(&c)?, "c");
    Ok(())
}

/// `prepare_write` sends the files but changes nothing until `commit`,
/// which checks (a file changed after the prepare is refused), renames and
/// runs the command; `abort` leaves every file and no temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_write_changes_nothing_before_its_commit() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let t = SshTransport::connect(&options(&sshd)).await?;
    let dir = tempfile::Builder::new().prefix("mp-node-ssh-").tempdir()?;
    let a = dir.path().join("a.toml");
    let b = dir.path().join("certs d").join("b.crt");
    let (a_s, b_s) = (node_path(&a)?, node_path(&b)?);
    std::fs::write(&a, "a = 1\n")?;
    let read = t.read_files(&[a_s, b_s]).await?;
    let expected: Vec<Option<&[u8]>> = read.iter().map(|r| r.as_deref()).collect();
    let files: [(&str, &[u8], u32); 2] = [(a_s, b"a = 2\n", 0o644), (b_s, b"new b", 0o600)];
    let marker = dir.path().join("ran");
    let touch = format!("touch '{}'", node_path(&marker)?);
    let temps = |dir: &Path| -> std::io::Result<usize> {
        Ok(walk(dir)?
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("mirrorplan-tmp"))
            .count())
    };

    // prepared: only temporary files; aborted: nothing left
    let prepared = t.prepare_write(&files, &expected, &touch).await?;
    assert_eq!(std::fs::read_to_string(&a)?, "a = 1\n");
    assert!(!b.exists() && !marker.exists());
    assert!(temps(dir.path())? > 0, "the files wait in temporary files");
    prepared.abort().await;
    let mut left = temps(dir.path())?;
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = temps(dir.path())?;
    }
    assert_eq!(left, 0, "temporary files left after an abort");
    assert_eq!(std::fs::read_to_string(&a)?, "a = 1\n");
    assert!(!b.exists() && !marker.exists());

    // a file edited between the prepare and the commit: refused
    let prepared = t.prepare_write(&files, &expected, &touch).await?;
    std::fs::write(&a, "a = 9\n")?;
    match prepared.commit().await {
        Err(NodeError::ChangedSinceRead { paths }) => assert_eq!(paths, a_s),
        other => panic!("expected ChangedSinceRead, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&a)?, "a = 9\n");
    assert!(!b.exists() && !marker.exists());
    assert_eq!(temps(dir.path())?, 0);

    // as read: written, then the command runs
    std::fs::write(&a, "a = 1\n")?;
    let prepared = t.prepare_write(&files, &expected, &touch).await?;
    let out = prepared.commit().await?;
    assert!(out.is_some_and(|o| o.success()));
    assert!(marker.exists());
    assert_eq!(std::fs::read_to_string(&a)?, "a = 2\n");
    assert_eq!(std::fs::read_to_string(&b)?, "new b");
    assert_eq!(std::fs::metadata(&b)?.permissions().mode() & 0o7777, 0o600);
    assert_eq!(temps(dir.path())?, 0);
    Ok(())
}

fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        }
        out.push(path);
    }
    Ok(out)
}
