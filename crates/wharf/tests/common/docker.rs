//! The Docker engine as the container tests use it: `docker` commands, the testbed image made
//! from the host's binary by `docker import` (shared with `containers.rs` by tag and lock), a
//! stack name no other test uses, and a look at a container's main process through `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `docker ARGS`; the output, or a failure that says what to install.
pub fn docker(args: &[&str]) -> Output {
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

/// A stack name no other test uses (networks and volumes are named after the stack).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}{}", std::process::id(), super::free_port())
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

/// The testbed as an image (`ENTRYPOINT [testbed, --host, 0.0.0.0]`), made once per testbed
/// build under the same tag and lock `containers.rs` uses, so parallel tests share it.
pub fn testbed_image() -> String {
    let output = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        output.status.success(),
        "the Docker daemon does not answer ({}): scripts/test starts dockerd",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let testbed = super::testbed_bin();
    let meta = std::fs::metadata(&testbed).unwrap();
    let stamp = format!("{:x}", meta.len() ^ mtime(&meta));
    let tag = format!("wharf-test/testbed:{stamp}-v1");
    let lock = std::fs::File::create(std::env::temp_dir().join("wharf-test-images.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if !docker(&["image", "inspect", &tag]).status.success() {
        let root = rootfs(&[&testbed], &["tmp"]);
        import(
            root.path(),
            &tag,
            &[
                &format!(
                    "ENTRYPOINT [\"{}\", \"--host\", \"0.0.0.0\"]",
                    testbed.display()
                ),
                "LABEL dev.wharf.test.version=v1",
            ],
        );
    }
    tag
}

fn mtime(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() as u64
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
