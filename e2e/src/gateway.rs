//! A `gateway` process with a config written from a template, on reserved ports.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a gateway gets to start listening or to exit.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Path of workspace binary `bin`. The first call in a test process runs
/// `cargo build --workspace --bins --all-features`, so `cargo test` never runs a stale
/// binary; it builds with the same features as `cargo test --workspace --all-features`
/// (the README's test command), sharing its artifacts.
pub(crate) fn workspace_bin(bin: &str) -> PathBuf {
    static PROFILE_DIR: OnceLock<PathBuf> = OnceLock::new();
    PROFILE_DIR.get_or_init(build_bins).join(bin)
}

/// The profile directory of this test binary: target/<profile>/deps/<test binary> or
/// target/<profile>/<binary> -> target/<profile>.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut profile_dir = exe.parent().expect("binary in a directory").to_path_buf();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    profile_dir
}

/// The Python interpreter for tests that use Python packages: the virtualenv that
/// `e2e/setup.sh test` (run by `e2e/test.sh`) makes in the target directory, else
/// `python3` on PATH.
pub fn python3() -> PathBuf {
    let venv = profile_dir().join("../venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn build_bins() -> PathBuf {
    let profile_dir = profile_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--workspace",
        "--bins",
        "--all-features",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // Variables cargo sets for this test process describe the test, not the build:
    // passed on, they change build-script fingerprints and force rebuilds.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let per_crate = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ];
        if per_crate.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(&*key);
        }
    }
    let status = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --workspace --bins --all-features failed"
    );
    profile_dir
}

/// The `gateway` binary of this workspace.
pub fn gateway_bin() -> PathBuf {
    workspace_bin("gateway")
}

/// `command` run by `prefix` (`["taskset", "-c", "0"]`): `prefix[0]` with the rest of
/// `prefix`, then `command`'s program and arguments, with `command`'s environment changes
/// and working directory. The prefix must end by executing the command in its own
/// process (as `taskset`, `unshare` and `exec` do), so its pid is the command's.
pub fn wrapped(prefix: &[&str], command: &Command) -> Command {
    let mut out = Command::new(prefix[0]);
    out.args(&prefix[1..])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => out.env(key, value),
            None => out.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        out.current_dir(dir);
    }
    out
}

/// `command` in a mount namespace of its own (unshare(1); needs root), where each
/// `(file, over)` of `mounts` is bind-mounted over the path `over`: what a process
/// reads at fixed paths (`/etc/resolv.conf`, a pod's service account files) is then
/// the test's, and the machine's files stay as they are. `over` must exist.
pub fn with_mounts(command: &Command, mounts: &[(&Path, &Path)]) -> Command {
    // sh mounts each pair, then becomes the command (same pid: signals reach it).
    let script =
        r#"while [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done; shift; exec "$@""#;
    let mut prefix: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-euc",
        script,
        "sh",
    ]
    .map(str::to_owned)
    .to_vec();
    for (file, over) in mounts {
        prefix.push(file.display().to_string());
        prefix.push(over.display().to_string());
    }
    prefix.push("--".to_owned());
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    wrapped(&prefix, command)
}

/// Reserves a free port on 127.0.0.1: binds port 0, reads the port, releases it.
pub(crate) fn reserve_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Ports reserved for `{{port:NAME}}` placeholders in config templates.
#[derive(Debug, Default, Clone)]
pub struct Ports(HashMap<String, u16>);

impl Ports {
    pub fn new() -> Self {
        Self::default()
    }

    /// `template` with each `{{port:NAME}}` replaced by NAME's port, reserving a
    /// free one the first time NAME is seen.
    pub fn render(&mut self, template: &str) -> String {
        let mut text = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{port:") {
            let end = rest[start..].find("}}").expect("unclosed {{port:") + start;
            let name = &rest[start + 7..end];
            let port = match self.0.get(name) {
                Some(port) => *port,
                None => {
                    // A port just released can be handed out again: never give two
                    // names the same one.
                    let port = std::iter::repeat_with(reserve_port)
                        .find(|p| !self.0.values().any(|v| v == p))
                        .expect("a free port");
                    self.0.insert(name.to_owned(), port);
                    port
                }
            };
            text.push_str(&rest[..start]);
            text.push_str(&port.to_string());
            rest = &rest[end + 2..];
        }
        text.push_str(rest);
        text
    }

    pub fn get(&self, name: &str) -> Option<u16> {
        self.0.get(name).copied()
    }

    /// Every reserved port.
    pub fn all(&self) -> Vec<u16> {
        self.0.values().copied().collect()
    }
}

/// A config file written into its own temporary directory.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
    ports: Ports,
}

impl ConfigFile {
    fn write(template: &str) -> Self {
        let mut ports = Ports::new();
        let text = ports.render(template);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).expect("write config");
        Self {
            _dir: dir,
            path,
            ports,
        }
    }
}

/// What a gateway command that was expected to end did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A running gateway; stopped (SIGKILL) when dropped. Its stderr goes to a log file.
pub struct Gateway {
    /// Keeps a config written from a template alive.
    _config_file: Option<ConfigFile>,
    config_path: PathBuf,
    ports: Ports,
    child: Child,
    _log_dir: tempfile::TempDir,
    log: PathBuf,
}

impl Gateway {
    /// Writes `template` (see [`Ports::render`]) and runs `gateway run` on it; returns
    /// once every `{{port:..}}` port accepts connections. Panics with the log if it exits.
    pub fn start(template: &str) -> Self {
        Self::start_with_env(template, &[])
    }

    /// [`Gateway::start`] with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_env(template: &str, env: &[(&str, &str)]) -> Self {
        let config = ConfigFile::write(template);
        let mut gw = Self::run(&config.path, &config.ports, env);
        gw._config_file = Some(config);
        gw
    }

    /// [`Gateway::start`] with the command [`Gateway::run_command`] made (no extra
    /// environment) changed or replaced by `adjust`: a flag added, a variable removed,
    /// the command [`wrapped`].
    pub fn start_with(template: &str, adjust: impl FnOnce(Command) -> Command) -> Self {
        let config = ConfigFile::write(template);
        let command = adjust(Self::run_command(&config.path, &[]));
        let mut gw = Self::spawn(command, &config.path, &config.ports);
        gw._config_file = Some(config);
        gw
    }

    /// Runs `gateway run --config config_path`, where the file was rendered with `ports`;
    /// returns once every port in `ports` accepts connections.
    pub fn run(config_path: &Path, ports: &Ports, env: &[(&str, &str)]) -> Self {
        Self::spawn(Self::run_command(config_path, env), config_path, ports)
    }

    /// The command [`Gateway::run`] starts: `gateway run --config config_path` with `env`
    /// added to this process's environment. A test that needs more (a flag, a variable
    /// removed, a [`wrapped`] command) changes it and starts it with [`Gateway::spawn`].
    pub fn run_command(config_path: &Path, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(gateway_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(config_path)
            .envs(env.iter().copied());
        command
    }

    /// Starts `command` (a gateway on the config at `config_path`, rendered with `ports`),
    /// its stderr to the log; returns once every port in `ports` accepts connections (and,
    /// with an admin port, once `/readyz` answers 200). Panics with the log if it exits.
    pub fn spawn(mut command: Command, config_path: &Path, ports: &Ports) -> Self {
        let log_dir = tempfile::tempdir().expect("tempdir");
        let log = log_dir.path().join("gateway.log");
        let stderr = std::fs::File::create(&log).expect("create log");
        let mut child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn gateway");
        let start = Instant::now();
        for port in ports.0.values() {
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("gateway exited ({status}) before listening:\n{log}");
                }
                if TcpStream::connect(("127.0.0.1", *port)).is_ok() {
                    break;
                }
                assert!(
                    start.elapsed() < START_DEADLINE,
                    "gateway did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let gw = Self {
            _config_file: None,
            config_path: config_path.to_path_buf(),
            ports: ports.clone(),
            child,
            _log_dir: log_dir,
            log,
        };
        // With an admin listener, also wait for readiness (first discovery answers).
        if gw.ports.get("admin").is_some() {
            while gw.admin_get("/readyz").0 != 200 {
                assert!(
                    start.elapsed() < START_DEADLINE,
                    "gateway never ready:\n{}",
                    gw.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        gw
    }

    /// Runs `gateway check` on `template` and returns what it did.
    pub fn check(template: &str) -> Outcome {
        let config = ConfigFile::write(template);
        Self::command(&["check", "--config"], &config.path)
    }

    /// Runs `gateway run` on `template`, expecting it to exit by itself (a bad config).
    /// Kills it and panics if it is still running after the start deadline.
    pub fn run_expecting_exit(template: &str) -> Outcome {
        let config = ConfigFile::write(template);
        let mut child = Command::new(gateway_bin())
            .arg("run")
            .arg("--config")
            .arg(&config.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway");
        let start = Instant::now();
        while child.try_wait().expect("try_wait").is_none() {
            if start.elapsed() > START_DEADLINE {
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait");
                panic!("gateway kept running: {:?}", Outcome::from(out));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("wait").into()
    }

    /// Runs the gateway binary with `args` followed by `path`.
    pub fn command(args: &[&str], path: &Path) -> Outcome {
        Command::new(gateway_bin())
            .args(args)
            .arg(path)
            .output()
            .expect("run gateway")
            .into()
    }

    /// The port that `{{port:NAME}}` became.
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .get(name)
            .unwrap_or_else(|| panic!("no {{{{port:{name}}}}} in the config"))
    }

    /// `127.0.0.1:<port of NAME>`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port(name)))
    }

    /// The config file the gateway runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "HUP") to the gateway.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `deadline` for the process to exit; its status, or `None` if it runs on.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// GET `path` from the admin listener (`{{port:admin}}`): status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        crate::admin_get(self.port("admin"), path)
    }

    /// The value of the sample `name` (with its labels, as printed) on `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.admin_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
