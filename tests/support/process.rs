//! The real `realtime` binary as a child process: one `Launch` builder for every way a
//! test starts it (config text, environment, arguments, log level, behind
//! `systemd-socket-activate`), and the `Server` it gives, whose stdout and stderr are
//! collected into one log and whose HTTP port is read from its `listening on` line.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait::{poll_until, poll_until_async, wait_until};
use super::{TempDir, get};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_realtime");

/// How a test starts the binary. `Launch::new(config).start()` is the common case: this
/// INI text as its config, at debug level, on a free port.
pub(crate) struct Launch {
    config: String,
    env: Vec<(OsString, OsString)>,
    args: Vec<OsString>,
    debug: bool,
    /// `(port, name)` sockets `systemd-socket-activate` passes, and its NOTIFY_SOCKET.
    activation: Option<(Vec<(u16, String)>, PathBuf)>,
    /// Where the config file goes, when the test owns that directory.
    dir: Option<PathBuf>,
    /// A file its stderr goes to instead of the log (stdout is dropped then).
    stderr: Option<PathBuf>,
}

impl Launch {
    pub(crate) fn new(config: &str) -> Launch {
        Launch {
            config: config.to_owned(),
            env: Vec::new(),
            args: Vec::new(),
            debug: true,
            activation: None,
            dir: None,
            stderr: None,
        }
    }

    /// One more environment variable for the server.
    pub(crate) fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// One more command-line argument, after `--config`.
    pub(crate) fn arg(mut self, arg: impl Into<OsString>) -> Launch {
        self.args.push(arg.into());
        self
    }

    /// Whether `--debug` is passed (it is by default); the daemon tests see the level
    /// their config sets.
    pub(crate) fn debug(mut self, on: bool) -> Launch {
        self.debug = on;
        self
    }

    /// Writes the config file into `dir` (which the test owns, say to chown it) rather
    /// than into a directory of the server's own.
    pub(crate) fn config_dir(mut self, dir: &TempDir) -> Launch {
        self.dir = Some(dir.0.clone());
        self
    }

    /// Sends its stderr to this file (the test sees a file, as journald would), not to
    /// the log; `start` then reads `listening on` from the file.
    pub(crate) fn stderr_file(mut self, path: &Path) -> Launch {
        self.stderr = Some(path.to_owned());
        self
    }

    /// Runs the binary behind `systemd-socket-activate`, which passes these named sockets
    /// the way systemd does and execs the binary at the first connection; sd_notify
    /// messages go to `notify`. No `--port 0` then: the passed sockets are the ports.
    pub(crate) fn socket_activation(mut self, sockets: &[(u16, &str)], notify: &Path) -> Launch {
        let sockets = sockets.iter().map(|(p, n)| (*p, (*n).to_owned())).collect();
        self.activation = Some((sockets, notify.to_owned()));
        self
    }

    /// Starts it and waits until it listens; `port` is its HTTP port.
    pub(crate) fn start(self) -> Server {
        let mut server = self.spawn();
        let found = poll_until(Duration::from_secs(10), || {
            let log = match &server.stderr {
                Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
                None => server.log(),
            };
            listening_port(&log).or_else(|| (!server.alive()).then_some(0))
        });
        match found {
            Some(port) if port != 0 => server.port = port,
            _ => panic!("server did not start; log:\n{}", server.log()),
        }
        server
    }

    /// Starts it without waiting: `port` is the activated `http` socket's, or 0.
    pub(crate) fn spawn(self) -> Server {
        let dir = self.dir.is_none().then(|| TempDir::new("server"));
        let config = match (&self.dir, &dir) {
            (Some(path), _) => path.join("realtime.conf"),
            (None, own) => own.as_ref().unwrap().path("realtime.conf"),
        };
        std::fs::write(&config, &self.config).expect("write test config");
        let mut port = 0;
        let mut cmd = match &self.activation {
            None => {
                let mut cmd = Command::new(BIN);
                cmd.arg("--config").arg(&config).args(["--port", "0"]);
                cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
                cmd
            }
            Some((sockets, notify)) => {
                let mut cmd = Command::new("systemd-socket-activate");
                for (p, name) in sockets {
                    cmd.arg("-l")
                        .arg(format!("127.0.0.1:{p}"))
                        .arg(format!("--fdname={name}"));
                    if name == "http" {
                        port = *p;
                    }
                }
                cmd.arg("-E")
                    .arg(format!("NOTIFY_SOCKET={}", notify.display()));
                for (k, v) in &self.env {
                    let mut kv = k.clone();
                    kv.push("=");
                    kv.push(v);
                    cmd.arg("-E").arg(kv);
                }
                cmd.arg(BIN).arg("--config").arg(&config);
                cmd
            }
        };
        cmd.args(&self.args);
        if self.debug {
            cmd.arg("--debug");
        }
        cmd.stdin(Stdio::null());
        match &self.stderr {
            Some(path) => {
                let file = std::fs::File::create(path).expect("create the stderr file");
                cmd.stdout(Stdio::null()).stderr(file);
            }
            None => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        let mut child = cmd.spawn().expect("start realtime");
        let log = Arc::new(Mutex::new(String::new()));
        let streams = [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Server {
            child,
            port,
            log,
            config,
            _dir: dir,
            stderr: self.stderr,
        }
    }
}

/// A running server (or the wrapper that execs it); killed on drop, its log printed when
/// the test failed.
pub(crate) struct Server {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<String>>,
    config: PathBuf,
    /// The directory of its own its config lives in, removed with it.
    _dir: Option<TempDir>,
    stderr: Option<PathBuf>,
}

impl Server {
    /// `Launch::new(config).start()`.
    pub(crate) fn start(config: &str) -> Server {
        Launch::new(config).start()
    }

    /// Everything it wrote so far, stderr and stdout.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The file its config was written to.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Waits until the log contains `needle`; false once `within` passed.
    pub(crate) async fn wait_log(&self, needle: &str, within: Duration) -> bool {
        poll_until_async(within, || async {
            self.log().contains(needle).then_some(())
        })
        .await
        .is_some()
    }

    /// Waits until one log line contains every one of `parts` (a session's id and what
    /// happened to it, say); false once `within` passed.
    pub(crate) async fn wait_log_line(&self, parts: &[&str], within: Duration) -> bool {
        poll_until_async(within, || async {
            let log = self.log();
            log.lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
                .then_some(())
        })
        .await
        .is_some()
    }

    /// Blocks until the log contains `needle`; panics with the log if it does not.
    pub(crate) fn expect_log(&self, needle: &str, within: Duration) {
        if poll_until(within, || self.log().contains(needle).then_some(())).is_none() {
            panic!("log never showed {needle:?}; log:\n{}", self.log());
        }
    }

    /// Waits for the process to exit.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        poll_until(within, || self.child.try_wait().unwrap())
    }

    /// Waits for the process to be gone; panics if it outlives `within`.
    pub(crate) fn expect_exit(&mut self, within: Duration) {
        wait_until(within, "the server to exit", || !self.alive());
    }

    /// Proves it still serves a newcomer: a polling handshake works.
    pub(crate) async fn assert_serving(&mut self) {
        assert!(self.alive(), "server exited; log:\n{}", self.log());
        let sid = super::handshake(self.port).await;
        assert_eq!(sid.len(), 20);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

/// The first `listening on` port in a log.
pub(crate) fn listening_port(log: &str) -> Option<u16> {
    log.lines()
        .filter_map(|l| l.split("listening on ").nth(1))
        .filter_map(|rest| rest.trim().rsplit(':').next())
        .find_map(|p| p.trim().parse().ok())
}

/// Waits until `GET /readyz` answers `want` (200 or 503); false when `within` passed.
pub(crate) async fn wait_readyz(port: u16, want: u16, within: Duration) -> bool {
    poll_until_async(within, || async {
        (get(port, "/readyz").await.0 == want).then_some(())
    })
    .await
    .is_some()
}
