//! Docker helpers shared by the container end-to-end tests: `docker` itself, local images
//! made from the host's binaries by `docker import` (the testbed, redis-server), a loopback
//! registry, and the queries the tests assert with (a stack's containers, volumes).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port, get, testbed_bin};

/// Runs `docker ARGS`; the output, or a failure that says what to install.
pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `docker` ({error}): scripts/test installs docker.io and starts dockerd"
            )
        })
}

pub fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn engine_answers() {
    let output = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        output.status.success(),
        "the Docker daemon does not answer ({}): scripts/test starts dockerd",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Local images the tests push to their registry: the testbed in two versions (two distinct
/// images, so two digests) and redis-server.
pub struct Images {
    pub testbed_v1: String,
    pub testbed_v2: String,
    pub redis: String,
}

/// A rootfs holding `binaries` at their own paths with every shared library `ldd` lists.
pub fn rootfs(binaries: &[&Path], extra_dirs: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = binaries.iter().map(|b| b.to_path_buf()).collect();
    for binary in binaries {
        let ldd = Command::new("ldd").arg(binary).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let path = line
                .split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from);
            files.extend(path);
        }
    }
    for file in files {
        let target = root.path().join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
    for dir in extra_dirs {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    root
}

/// `docker import` of a rootfs as `tag`, with Dockerfile-like `changes`.
pub fn import(root: &Path, tag: &str, changes: &[&str]) {
    let mut args = vec!["import".to_owned()];
    for change in changes {
        args.push("--change".to_owned());
        args.push((*change).to_owned());
    }
    args.extend(["-".to_owned(), tag.to_owned()]);
    let mut tar = Command::new("tar")
        .args(["-C", &root.display().to_string(), "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let output = Command::new("docker")
        .args(&args)
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of {}", root.display());
    assert!(
        output.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds the images once per machine (and per testbed build), under a lock, so the tests
/// running in parallel share them.
pub fn images() -> Images {
    engine_answers();
    let testbed = testbed_bin();
    let meta = std::fs::metadata(&testbed).unwrap();
    let stamp = stamp(&testbed, &meta);
    let images = Images {
        testbed_v1: format!("wharf-test/testbed:{stamp}-v1"),
        testbed_v2: format!("wharf-test/testbed:{stamp}-v2"),
        redis: "wharf-test/redis:1".to_owned(),
    };
    let lock = std::fs::File::create(std::env::temp_dir().join("wharf-test-images.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let have = |tag: &str| docker(&["image", "inspect", tag]).status.success();
    if !have(&images.testbed_v1) || !have(&images.testbed_v2) {
        let root = rootfs(&[&testbed], &["tmp"]);
        for (tag, version) in [(&images.testbed_v1, "v1"), (&images.testbed_v2, "v2")] {
            import(
                root.path(),
                tag,
                &[
                    &format!(
                        "ENTRYPOINT [\"{}\", \"--host\", \"0.0.0.0\"]",
                        testbed.display()
                    ),
                    &format!("LABEL dev.wharf.test.version={version}"),
                ],
            );
        }
    }
    if !have(&images.redis) {
        let server = PathBuf::from("/usr/bin/redis-server");
        assert!(
            server.exists(),
            "redis-server is missing: scripts/test installs redis-server"
        );
        let root = rootfs(&[&server], &["data", "tmp"]);
        import(
            root.path(),
            &images.redis,
            &["ENTRYPOINT [\"/usr/bin/redis-server\"]"],
        );
    }
    images
}

/// What tells one build of a binary from another: its path, size and modification time. The
/// path matters: two worktrees (or a copied target directory) can hold binaries of the same
/// size and time, and an image made from one names a path the other does not have.
pub fn stamp(binary: &Path, meta: &std::fs::Metadata) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    binary.hash(&mut hasher);
    meta.len().hash(&mut hasher);
    mtime(meta).hash(&mut hasher);
    format!("{:x}", hasher.finish())
}

pub fn mtime(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() as u64
}

/// A Docker registry (Debian's `docker-registry`) on a loopback port, storing in a temp dir;
/// killed when dropped. The engine trusts loopback registries over plain HTTP.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", &config.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start docker-registry ({error}): scripts/test installs it")
            });
        eventually("the registry answers", Duration::from_secs(20), || {
            get(port, "/v2/").filter(|(status, _)| *status == 200)
        });
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    /// Pushes a local image as `name` (`testbed:v1`) and drops the engine's copy of that
    /// reference, so a start has to pull it. Answers the reference.
    pub fn push(&self, local: &str, name: &str) -> String {
        let reference = format!("127.0.0.1:{}/{name}", self.port);
        docker_ok(&["tag", local, &reference]);
        docker_ok(&["push", &reference]);
        docker_ok(&["rmi", &reference]);
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stack name no other test uses (networks and volumes are named after the stack).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}{}", std::process::id(), free_port())
}

/// The ids of the running containers of a stack.
pub fn containers(stack: &str) -> Vec<String> {
    let listed = docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=dev.wharf.stack={stack}"),
    ]);
    let mut ids: Vec<String> = listed.lines().map(str::to_owned).collect();
    ids.sort();
    ids
}

/// Every container of a stack, running or not.
pub fn all_containers(stack: &str) -> Vec<String> {
    let listed = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=dev.wharf.stack={stack}"),
    ]);
    listed.lines().map(str::to_owned).collect()
}

pub fn started_at(id: &str) -> String {
    docker_ok(&["inspect", "--format", "{{.State.StartedAt}}", id])
}

pub fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}

/// Removes a named volume when dropped (the test's own, whatever its outcome).
pub struct VolumeGuard(pub String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

/// One RESP command to redis on loopback; the raw reply.
pub fn redis(port: u16, args: &[&str]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(command.as_bytes()).ok()?;
    let mut reply = [0u8; 256];
    let n = stream.read(&mut reply).ok()?;
    Some(String::from_utf8_lossy(&reply[..n]).into_owned())
}

pub fn version_served(port: u16) -> Option<String> {
    get(port, "/").and_then(|(status, body)| (status == 200).then_some(body))
}

pub fn show(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A testbed image whose entrypoint adds `flags` (say `--error-rate 1.0`: a bad release),
/// tagged `wharf-test/testbed:STAMP-SUFFIX`; built once per machine like [`images`]'.
pub fn testbed_image_with(suffix: &str, flags: &[&str]) -> String {
    engine_answers();
    let testbed = testbed_bin();
    let meta = std::fs::metadata(&testbed).unwrap();
    let tag = format!("wharf-test/testbed:{}-{suffix}", stamp(&testbed, &meta));
    let lock = std::fs::File::create(std::env::temp_dir().join("wharf-test-images.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if !docker(&["image", "inspect", &tag]).status.success() {
        let root = rootfs(&[&testbed], &["tmp"]);
        let mut entrypoint = vec![
            testbed.display().to_string(),
            "--host".into(),
            "0.0.0.0".into(),
        ];
        entrypoint.extend(flags.iter().map(|f| (*f).to_owned()));
        let quoted: Vec<String> = entrypoint.iter().map(|w| format!("\"{w}\"")).collect();
        import(
            root.path(),
            &tag,
            &[
                &format!("ENTRYPOINT [{}]", quoted.join(", ")),
                &format!("LABEL dev.wharf.test.version={suffix}"),
            ],
        );
    }
    tag
}

/// The testbed image of version v1 (`ENTRYPOINT [testbed, --host, 0.0.0.0]`), made once per
/// testbed build like every image of [`images`].
pub fn testbed_image() -> String {
    images().testbed_v1
}

/// The ids of the running containers of a stack's service.
pub fn service_containers(stack: &str, service: &str) -> Vec<String> {
    let listed = docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=dev.wharf.stack={stack}"),
        "--filter",
        &format!("label=dev.wharf.service={service}"),
    ]);
    listed.lines().map(str::to_owned).collect()
}

/// `docker inspect --format FORMAT ID`.
pub fn inspect(id: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, id])
}

/// A file of `/proc/PID/` of the container's main process, as the host's kernel shows it.
pub fn proc_file(id: &str, file: &str) -> String {
    let pid = inspect(id, "{{.State.Pid}}");
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap()
}
