/**
 * The Slurm job's clock in JupyterLab's status bar (hpcspawner).
 *
 * The job's server extension (hpcspawner.job.clock) answers
 * GET {baseUrl}hpcspawner/job/clock with the job's id, partition, nodes, the seconds
 * left, the admin's warning thresholds and whether the save of open documents is due
 * (the time is near, or Slurm's signal ahead of the limit came). This plugin asks every
 * POLL_SECONDS, counts down between two answers, shows a notification when a
 * threshold is reached, and saves the open documents with unsaved changes once the save
 * is due. Outside a Slurm job (or without the server extension) the item stays hidden.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

/** Seconds between two requests to the server extension (it reads squeue less often). */
const POLL_SECONDS = 10;
/** Seconds between two requests after one failed (the server may be gone). */
const RETRY_SECONDS = 30;
/**
 * Seconds past a threshold that mean the limit was raised (warn and save again), rather
 * than a new answer that differs from the count-down by a second or two.
 */
const RAISED_SECONDS = 30;
const PLUGIN_ID = 'hpcspawner-jupyterlab:job-clock';

/** The server extension's answer (hpcspawner.job.walltime.clock_status). */
interface IClockStatus {
  in_job: boolean;
  job_id?: string;
  partition?: string | null;
  nodes?: string | null;
  state?: string | null;
  time_limit?: string | null;
  end_time?: string | null;
  seconds_left?: number | null;
  warnings?: number[];
  warning?: number | null;
  save_before_end?: number;
  save_due?: boolean;
  end_signal?: boolean;
  stale?: boolean;
  error?: string | null;
}

/** 9045 -> "2:30:45"; 95000 -> "1-02:23:20" (Slurm's way of writing durations). */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  const mmss = `${String(minutes).padStart(2, '0')}:${String(secs).padStart(2, '0')}`;
  if (days > 0) {
    return `${days}-${String(hours).padStart(2, '0')}:${mmss}`;
  }
  return `${hours}:${mmss}`;
}

/** 300 -> "5 minutes", 90 -> "1 minute 30 seconds", 45 -> "45 seconds". */
export function describeDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const minutes = Math.floor(total / 60);
  const secs = total % 60;
  const unit = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (minutes === 0) {
    return unit(secs, 'second');
  }
  if (minutes >= 10 || secs === 0) {
    return unit(Math.round(total / 60), 'minute');
  }
  return `${unit(minutes, 'minute')} ${unit(secs, 'second')}`;
}

/** The status bar item: the time left; the job on hover. */
class JobClockItem extends Widget {
  constructor() {
    super();
    this.addClass('hpcspawner-JobClock');
    this.node.setAttribute('role', 'timer');
    this.node.setAttribute('aria-live', 'off');
  }

  setText(text: string, title: string, warning: boolean): void {
    this.node.textContent = text;
    this.node.title = title;
    this.toggleClass('hpcspawner-JobClock-warning', warning);
  }
}

/** Polls the server extension, counts down, warns and saves. */
class JobClock {
  readonly item = new JobClockItem();
  readonly activeChanged = new Signal<this, void>(this);
  active = false;

  constructor(
    private app: JupyterFrontEnd,
    private docManager: IDocumentManager | null
  ) {}

  start(): void {
    void this.poll();
    window.setInterval(() => this.render(), 1000);
  }

  private async poll(): Promise<void> {
    let delay = POLL_SECONDS;
    try {
      const status = await this.fetchStatus();
      if (status === null || !status.in_job) {
        // not in a Slurm job, or a server without hpcspawner's extension: stay hidden
        this.setActive(false);
        return;
      }
      this.update(status);
    } catch (reason) {
      this.failed = String(reason);
      delay = RETRY_SECONDS;
    }
    window.setTimeout(() => void this.poll(), delay * 1000);
  }

  private async fetchStatus(): Promise<IClockStatus | null> {
    const settings = ServerConnection.makeSettings();
    const url = URLExt.join(settings.baseUrl, 'hpcspawner', 'job', 'clock');
    const response = await ServerConnection.makeRequest(url, {}, settings);
    if (response.status === 404) {
      return null;
    }
    if (!response.ok) {
      throw new Error(`HTTP ${response.status}`);
    }
    return (await response.json()) as IClockStatus;
  }

  private update(status: IClockStatus): void {
    this.status = status;
    this.receivedAt = performance.now();
    this.failed = null;
    this.setActive(true);
    this.render();
  }

  /** Seconds left now: the last answer, counted down since it came. */
  private secondsLeft(): number | null {
    const left = this.status?.seconds_left;
    if (left === null || left === undefined) {
      return null;
    }
    return Math.max(0, left - (performance.now() - this.receivedAt) / 1000);
  }

  private render(): void {
    const status = this.status;
    if (!this.active || status === null) {
      return;
    }
    const left = this.secondsLeft();
    const where = [
      `Slurm job ${status.job_id}`,
      status.partition ? `partition ${status.partition}` : '',
      status.nodes ? `node ${status.nodes}` : ''
    ]
      .filter(Boolean)
      .join(', ');
    const lines = [where];
    if (status.time_limit) {
      lines.push(`Time limit ${status.time_limit}`);
    }
    if (status.end_time) {
      lines.push(`Ends at ${status.end_time.replace('T', ' ')} (the node's time)`);
    }
    if (status.error) {
      lines.push(`Last read of Slurm failed: ${status.error}`);
    }
    if (this.failed) {
      lines.push(`The server does not answer: ${this.failed}`);
    }
    let text: string;
    if (left === null) {
      text = status.error ? 'Time left: unknown' : 'No time limit';
    } else if (left <= 0) {
      text = 'Walltime reached';
    } else {
      text = `Time left: ${formatDuration(left)}`;
    }
    const warnings = status.warnings ?? [];
    const near = left !== null && warnings.some(w => left <= w);
    this.item.setText(text, lines.join('\n'), near);
    // every second, on the count-down: the server's answer comes every POLL_SECONDS only
    this.warnIfDue(status, left);
    void this.saveIfDue(status, left);
  }

  /** The smallest threshold the time left has reached (hpcspawner.job.walltime.due_warning). */
  private dueWarning(status: IClockStatus, left: number | null): number | null {
    if (left === null) {
      return status.warning ?? null;
    }
    const reached = (status.warnings ?? []).filter(w => left <= w);
    return reached.length ? Math.min(...reached) : null;
  }

  private warnIfDue(status: IClockStatus, left: number | null): void {
    // the threshold reached changes as time passes, and again if the limit is raised
    const due = this.dueWarning(status, left);
    if (due === this.warned) {
      return;
    }
    const warned = this.warned;
    const raised = warned !== null && (due === null || due > warned);
    if (raised && left !== null && left <= warned + RAISED_SECONDS) {
      return; // not raised: the count-down and a new answer differ by a little
    }
    this.warned = due;
    if (due === null) {
      return;
    }
    const save = status.save_before_end ?? 0;
    // short: JupyterLab cuts a notification's text at 140 characters
    const after =
      save > 0
        ? ` (open documents are saved ${describeDuration(save)} before the end)`
        : '';
    Notification.warning(
      `Slurm job ${status.job_id} ends in ${describeDuration(left ?? due)}: save your work${after}.`,
      { autoClose: false }
    );
  }

  private async saveIfDue(status: IClockStatus, left: number | null): Promise<void> {
    // the server says so (Slurm's signal came, or its clock), or the count-down does
    const save = status.save_before_end ?? 0;
    const due = status.save_due || (save > 0 && left !== null && left <= save);
    if (!due) {
      if (left === null || left > save + RAISED_SECONDS) {
        this.saved = false; // the limit was raised: save again before the new end
      }
      return;
    }
    if (this.saved) {
      return;
    }
    this.saved = true;
    const why = status.end_signal
      ? 'Slurm announced the end of the job'
      : `The job ends in ${describeDuration(left ?? 0)}`;
    try {
      const count = await this.saveAll();
      const what =
        count === 0
          ? 'no open document had unsaved changes'
          : count === 1
            ? 'saved 1 open document'
            : `saved ${count} open documents`;
      Notification.info(`${why}: ${what}.`, { autoClose: false });
    } catch (reason) {
      Notification.error(`${why}, and saving failed: ${reason}`, {
        autoClose: false
      });
    }
  }

  /** Save every open document with unsaved changes; the number saved. */
  private async saveAll(): Promise<number> {
    if (this.docManager === null) {
      await this.app.commands.execute('docmanager:save-all');
      return 0;
    }
    const seen = new Set<string>();
    const saves: Promise<void>[] = [];
    for (const widget of this.app.shell.widgets('main')) {
      const context = this.docManager.contextForWidget(widget);
      if (!context || seen.has(context.path)) {
        continue;
      }
      seen.add(context.path);
      if (
        context.model.dirty &&
        !context.model.readOnly &&
        context.contentsModel?.writable !== false
      ) {
        saves.push(context.save());
      }
    }
    await Promise.all(saves);
    return saves.length;
  }

  private setActive(active: boolean): void {
    if (active !== this.active) {
      this.active = active;
      this.activeChanged.emit();
    }
  }

  private status: IClockStatus | null = null;
  private receivedAt = 0;
  private failed: string | null = null;
  private warned: number | null = null;
  private saved = false;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    "The Slurm job's time left in the status bar, warnings before the end, and a save of open documents before it",
  autoStart: true,
  optional: [IStatusBar, IDocumentManager],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    docManager: IDocumentManager | null
  ) => {
    const clock = new JobClock(app, docManager);
    if (statusBar) {
      statusBar.registerStatusItem(PLUGIN_ID, {
        item: clock.item,
        align: 'left',
        rank: 1000,
        isActive: () => clock.active,
        activeStateChanged: clock.activeChanged
      });
    }
    // warnings and the save work without a status bar too
    clock.start();
  }
};

export default plugin;
