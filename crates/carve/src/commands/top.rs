//! `carve top`: a live terminal view of a running plan from its supervisor API — a strip of the
//! host's cores (owner, load, IRQs landing), the partitions, a sparkline of each dedicated
//! core's stolen %, and keys to stop/start a partition and follow its log. `--once --json`
//! prints one frame's data for scripts.

use carve_observe::client::Client;
use carve_observe::model::{CoreView, Overview};
use crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState, Wrap};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Arguments of `carve top`.
#[derive(clap::Args)]
pub struct Args {
    /// The plan (default: the only plan that is up).
    #[arg(long)]
    pub plan: Option<String>,
    /// Print one frame and exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: print the frame's data as JSON.
    #[arg(long, requires = "once")]
    pub json: bool,
    /// Refresh interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval: u64,
}

fn client(plan: Option<String>) -> anyhow::Result<Client> {
    let root = Path::new(carve_engine::state::DEFAULT_ROOT);
    let plan = match plan {
        Some(p) => p,
        None => match carve_engine::ops::running_plans(root).as_slice() {
            [one] => one.clone(),
            [] => anyhow::bail!("no plan is up"),
            many => anyhow::bail!(
                "several plans are up, name one with --plan: {}",
                many.join(", ")
            ),
        },
    };
    let c = Client::for_plan(root, &plan);
    if !c.is_up() {
        anyhow::bail!(
            "plan {plan} has no supervisor API at {} (is it up with `carve up -d`?)",
            c.socket.display()
        );
    }
    Ok(c)
}

/// Runs `carve top`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let c = client(args.plan)?;
    if args.once {
        let ov = c.overview()?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&ov)?);
        } else {
            for l in text_frame(&ov) {
                println!("{l}");
            }
        }
        return Ok(());
    }
    let mut term = ratatui::init();
    let r = App::new(c, Duration::from_millis(args.interval.max(100))).run(&mut term);
    ratatui::restore();
    r
}

fn text_frame(ov: &Overview) -> Vec<String> {
    let mut out = vec![format!("plan {} (supervisor pid {})", ov.plan, ov.holder)];
    for c in &ov.cores {
        out.push(format!(
            "cpu{} {} busy {:.0}% irq/s {:.0}{}",
            c.cpu,
            owner(c),
            c.busy_ratio * 100.0,
            c.irqs_per_second,
            c.probe
                .as_ref()
                .map(|p| format!(" stolen {:.2}%", p.stolen_ratio * 100.0))
                .unwrap_or_default()
        ));
    }
    for p in &ov.partitions {
        out.push(format!("{} {} {} {}", p.name, p.kind, p.cpus, p.state));
    }
    out
}

fn owner(c: &CoreView) -> String {
    if c.owners.is_empty() {
        "housekeeping".into()
    } else {
        c.owners.join(",")
    }
}

struct App {
    client: Client,
    interval: Duration,
    ov: Option<Overview>,
    table: TableState,
    status: String,
    logs: Option<String>,
    done: mpsc::Receiver<String>,
    send: mpsc::Sender<String>,
}

impl App {
    fn new(client: Client, interval: Duration) -> Self {
        let (send, done) = mpsc::channel();
        App {
            client,
            interval,
            ov: None,
            table: TableState::default().with_selected(Some(0)),
            status: String::new(),
            logs: None,
            done,
            send,
        }
    }

    fn selected(&self) -> Option<String> {
        let ov = self.ov.as_ref()?;
        ov.partitions
            .get(self.table.selected()?)
            .map(|p| p.name.clone())
    }

    fn refresh(&mut self) {
        match self.client.overview() {
            Ok(ov) => self.ov = Some(ov),
            Err(e) => self.status = format!("{e}"),
        }
        if let (Some(name), true) = (self.selected(), self.logs.is_some()) {
            let mut buf = Vec::new();
            let _ = self.client.request(
                hyper::Method::GET,
                &format!("/v1/partitions/{name}/logs?tail=4096"),
                None,
                &mut |d| {
                    buf.extend_from_slice(d);
                    true
                },
            );
            self.logs = Some(String::from_utf8_lossy(&buf).into());
        }
        while let Ok(m) = self.done.try_recv() {
            self.status = m;
        }
    }

    /// Stops or starts the selected partition on a thread: the view keeps refreshing meanwhile.
    fn act(&mut self, action: &'static str) {
        let Some(name) = self.selected() else { return };
        self.status = format!("{action} {name}…");
        let (c, send) = (self.client.clone(), self.send.clone());
        std::thread::spawn(move || {
            let m = match c.act(&name, action) {
                Ok(p) => format!("{name}: {action} done, now {}", p.state),
                Err(e) => format!("{name}: {action} failed: {e}"),
            };
            let _ = send.send(m);
        });
    }

    fn run(mut self, term: &mut ratatui::DefaultTerminal) -> anyhow::Result<()> {
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                self.refresh();
                next = Instant::now() + self.interval;
            }
            term.draw(|f| self.draw(f))?;
            if !event::poll(
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200)),
            )? {
                continue;
            }
            let Event::Key(k) = event::read()? else {
                continue;
            };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            let n = self.ov.as_ref().map(|o| o.partitions.len()).unwrap_or(0);
            match k.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                KeyCode::Down | KeyCode::Char('j') if n > 0 => self
                    .table
                    .select(Some((self.table.selected().unwrap_or(0) + 1) % n)),
                KeyCode::Up | KeyCode::Char('k') if n > 0 => self
                    .table
                    .select(Some((self.table.selected().unwrap_or(0) + n - 1) % n)),
                KeyCode::Char('s') => self.act("stop"),
                KeyCode::Char('S') | KeyCode::Char('t') => self.act("start"),
                KeyCode::Char('r') => self.act("restart"),
                KeyCode::Char('l') => {
                    self.logs = if self.logs.is_some() {
                        None
                    } else {
                        Some(String::new())
                    };
                    next = Instant::now();
                }
                _ => {}
            }
        }
    }

    fn draw(&mut self, f: &mut ratatui::Frame) {
        let Some(ov) = self.ov.clone() else {
            f.render_widget(
                Paragraph::new(format!("waiting for the supervisor… {}", self.status)),
                f.area(),
            );
            return;
        };
        let ded: Vec<&CoreView> = ov.cores.iter().filter(|c| c.probe.is_some()).collect();
        let mut cons = vec![
            Constraint::Length(1),
            Constraint::Length(6),
            Constraint::Min(4),
            Constraint::Length(3 * ded.len().max(1) as u16),
        ];
        if self.logs.is_some() {
            cons.push(Constraint::Length(10));
        }
        cons.push(Constraint::Length(1));
        let rows = Layout::default()
            .direction(Direction::Vertical)
            .constraints(cons)
            .split(f.area());
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(
                    format!(" carve top — plan {} ", ov.plan),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!("supervisor pid {}  ", ov.holder)),
                Span::styled(
                    "↑↓ select  s stop  S start  r restart  l logs  q quit",
                    Style::new().fg(Color::DarkGray),
                ),
            ])),
            rows[0],
        );
        self.draw_cores(f, rows[1], &ov);
        self.draw_table(f, rows[2], &ov);
        draw_sparks(f, rows[3], &ded);
        let mut i = 4;
        if let Some(l) = &self.logs {
            let name = self.selected().unwrap_or_default();
            let lines: Vec<&str> = l.lines().collect();
            let tail = lines[lines.len().saturating_sub(8)..].join("\n");
            f.render_widget(
                Paragraph::new(tail).wrap(Wrap { trim: false }).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(format!(" logs: {name} ")),
                ),
                rows[i],
            );
            i += 1;
        }
        f.render_widget(Paragraph::new(format!(" {}", self.status)), rows[i]);
    }

    fn draw_cores(&self, f: &mut ratatui::Frame, area: Rect, ov: &Overview) {
        let n = ov.cores.len().max(1) as u32;
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints(vec![Constraint::Ratio(1, n); n as usize])
            .split(area);
        for (c, col) in ov.cores.iter().zip(cols.iter()) {
            let colour = if c.dedicated {
                Color::Red
            } else if c.owners.is_empty() {
                Color::Gray
            } else {
                Color::Cyan
            };
            let irqs: Vec<String> = c
                .irqs
                .iter()
                .take(2)
                .map(|i| format!("{}×{}", short(&i.irq), i.count))
                .collect();
            let mut lines = vec![
                Line::from(Span::styled(
                    owner(c),
                    Style::new().fg(colour).add_modifier(Modifier::BOLD),
                )),
                Line::from(format!(
                    "load {:>5.1}%  irq/s {:.0}",
                    c.busy_ratio * 100.0,
                    c.irqs_per_second
                )),
                Line::from(format!(
                    "irqs: {}",
                    if irqs.is_empty() {
                        "-".into()
                    } else {
                        irqs.join(" ")
                    }
                )),
            ];
            if let Some(p) = &c.probe {
                lines.push(Line::from(format!(
                    "stolen {:.2}%  gap {:.0}µs",
                    p.stolen_ratio * 100.0,
                    p.longest_gap_seconds * 1e6
                )));
            }
            let title = format!(
                " CPU {}{} ",
                c.cpu,
                if c.dedicated { " dedicated" } else { "" }
            );
            f.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .border_style(Style::new().fg(colour))
                        .title(title),
                ),
                *col,
            );
        }
    }

    fn draw_table(&mut self, f: &mut ratatui::Frame, area: Rect, ov: &Overview) {
        let header = Row::new([
            "NAME",
            "KIND",
            "CPUS",
            "STATE",
            "PID",
            "CPU",
            "MEM/LIMIT",
            "RESTARTS",
            "OFF-CPU%",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        let rows: Vec<Row> = ov
            .partitions
            .iter()
            .map(|p| {
                let state_style = match p.state.as_str() {
                    "running" => Style::new().fg(Color::Green),
                    "stopped" | "exited" => Style::new().fg(Color::Red),
                    _ => Style::new().fg(Color::Yellow),
                };
                Row::new(vec![
                    Cell::from(p.name.clone()),
                    Cell::from(p.kind.clone()),
                    Cell::from(p.cpus.clone()),
                    Cell::from(p.state.clone()).style(state_style),
                    Cell::from(p.pid.map(|x| x.to_string()).unwrap_or("-".into())),
                    Cell::from(p.cpu_ratio.map(|x| format!("{x:.2}")).unwrap_or("-".into())),
                    Cell::from(format!(
                        "{}/{}M",
                        p.memory_bytes
                            .map(|b| (b >> 20).to_string())
                            .unwrap_or("-".into()),
                        p.memory_limit_bytes >> 20
                    )),
                    Cell::from(p.restarts.to_string()),
                    Cell::from(
                        p.offcpu_ratio
                            .map(|x| format!("{:.2}", x * 100.0))
                            .unwrap_or("-".into()),
                    ),
                ])
            })
            .collect();
        let widths = [12, 10, 6, 11, 8, 6, 12, 9, 9].map(Constraint::Length);
        let t = Table::new(rows, widths)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title(" partitions "))
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("> ");
        f.render_stateful_widget(t, area, &mut self.table);
    }
}

/// "24 virtio0-input.0" → "virtio0-input.0"; "LOC Local timer interrupts" → "LOC".
fn short(label: &str) -> &str {
    match label.split_once(' ') {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
        Some((n, _)) => n,
        None => label,
    }
}

fn draw_sparks(f: &mut ratatui::Frame, area: Rect, ded: &[&CoreView]) {
    if ded.is_empty() {
        f.render_widget(
            Paragraph::new("no dedicated core")
                .block(Block::default().borders(Borders::ALL).title(" stolen % ")),
            area,
        );
        return;
    }
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints(vec![Constraint::Length(3); ded.len()])
        .split(area);
    for (c, r) in ded.iter().zip(rows.iter()) {
        let w = r.width.saturating_sub(2) as usize;
        let h = &c.stolen_history;
        // Hundredths of a percent, so a 0.5 % floor and a 5 % spike both show.
        let data: Vec<u64> = h[h.len().saturating_sub(w)..]
            .iter()
            .map(|x| (x * 10_000.0) as u64)
            .collect();
        let now = c
            .probe
            .as_ref()
            .map(|p| p.stolen_ratio * 100.0)
            .unwrap_or(0.0);
        let max = data.iter().max().copied().unwrap_or(0) as f64 / 100.0;
        f.render_widget(
            Sparkline::default()
                .data(&data)
                .style(Style::new().fg(Color::Red))
                .block(Block::default().borders(Borders::ALL).title(format!(
                    " stolen % CPU {} ({}) now {now:.2}%  max {max:.2}% ",
                    c.cpu,
                    owner(c)
                ))),
            *r,
        );
    }
}
