//! Parley as production runs it: every role its own process, two
//! command-apis and two ws-pushes, so a client always has somewhere to go
//! while one restarts. Clients look addresses up on every request; a
//! restarted role comes back on a new port.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use parley::cli::Backend;

use crate::helpers::{migrate, Deployment, Process};

/// The addresses of one role's live instances.
#[derive(Clone, Default)]
pub struct Endpoints(Arc<RwLock<Vec<String>>>);

impl Endpoints {
    /// The `i`-th live address (wrapping), so a client that failed on one
    /// moves on to the next.
    pub fn pick(&self, i: usize) -> Option<String> {
        let list = self.0.read().unwrap_or_else(|e| e.into_inner());
        (!list.is_empty()).then(|| list[i % list.len()].clone())
    }

    fn add(&self, addr: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(addr.to_owned());
    }

    fn remove(&self, addr: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a| a != addr);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    CommandApi,
    QueryApi,
    Projector,
    WsPush,
}

impl Role {
    fn arg(self) -> &'static str {
        match self {
            Role::CommandApi => "command-api",
            Role::QueryApi => "query-api",
            Role::Projector => "projector",
            Role::WsPush => "ws-push",
        }
    }
}

struct Instance {
    role: Role,
    process: Process,
}

pub struct Parley {
    pub deployment: Deployment,
    instances: Vec<Instance>,
    pub commands: Endpoints,
    pub queries: Endpoints,
    pub pushes: Endpoints,
}

const LAYOUT: [Role; 6] = [
    Role::CommandApi,
    Role::CommandApi,
    Role::QueryApi,
    Role::Projector,
    Role::WsPush,
    Role::WsPush,
];

impl Parley {
    pub async fn start() -> Parley {
        let deployment = Deployment::on(Backend::Cluster);
        migrate(&deployment).await;
        let mut p = Parley {
            deployment,
            instances: Vec::new(),
            commands: Endpoints::default(),
            queries: Endpoints::default(),
            pushes: Endpoints::default(),
        };
        // All at once: each spends its start-up waiting on the cluster.
        let started = futures_util::future::join_all(LAYOUT.map(|role| {
            let d = &p.deployment;
            async move { (role, start_one(d, role).await) }
        }))
        .await;
        for (role, process) in started {
            p.register(role, process);
        }
        p
    }

    fn endpoints(&self, role: Role) -> Option<&Endpoints> {
        match role {
            Role::CommandApi => Some(&self.commands),
            Role::QueryApi => Some(&self.queries),
            Role::WsPush => Some(&self.pushes),
            Role::Projector => None,
        }
    }

    async fn launch(&mut self, role: Role) {
        let process = start_one(&self.deployment, role).await;
        self.register(role, process);
    }

    fn register(&mut self, role: Role, process: Process) {
        if let Some(e) = self.endpoints(role) {
            e.add(&process.addr);
        }
        self.instances.push(Instance { role, process });
    }

    pub fn topic(&self) -> &str {
        &self.deployment.topic
    }

    /// `kill -9` of the (first) instance of `role`, and a new one in its
    /// place.
    pub async fn kill_and_replace(&mut self, role: Role) {
        let i = self.index_of(role);
        let mut old = self.instances.remove(i);
        if let Some(e) = self.endpoints(role) {
            e.remove(&old.process.addr);
        }
        old.process
            .child
            .kill()
            .await
            .unwrap_or_else(|e| panic!("kill -9 {role:?}: {e}"));
        self.launch(role).await;
    }

    /// Every instance in turn: a new one is started and ready, then the
    /// old one leaves the address list and gets SIGTERM (it drains and
    /// closes its sockets with 1001).
    pub async fn rolling_restart(&mut self) {
        let roles: Vec<Role> = self.instances.iter().map(|i| i.role).collect();
        for role in roles {
            let i = self.index_of(role);
            let mut old = self.instances.remove(i);
            self.launch(role).await;
            if let Some(e) = self.endpoints(role) {
                e.remove(&old.process.addr);
            }
            terminate(&mut old.process).await;
        }
    }

    fn index_of(&self, role: Role) -> usize {
        self.instances
            .iter()
            .position(|i| i.role == role)
            .unwrap_or_else(|| panic!("no {role:?} running"))
    }
}

/// One role, once ready (connected to the log and the store).
async fn start_one(d: &Deployment, role: Role) -> Process {
    let process = Process::spawn(&["serve", role.arg()], d, &[]).await;
    process.client().await;
    process
}

/// SIGTERM, then waits for a graceful exit (which must come).
async fn terminate(p: &mut Process) {
    let pid = p
        .child
        .id()
        .unwrap_or_else(|| panic!("process already gone"));
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -TERM {pid} failed");
    let exit = tokio::time::timeout(Duration::from_secs(30), p.child.wait())
        .await
        .unwrap_or_else(|_| panic!("pid {pid} did not exit within 30 s of SIGTERM"))
        .unwrap_or_else(|e| panic!("wait for {pid}: {e}"));
    assert!(exit.success(), "pid {pid} exited {exit} after SIGTERM");
}
