"""Job records as the CLI prints them (`smapx jobs`, `smapx job ID`)."""

import json

from worker import jobs


def list_jobs_text(limit: int = 20, as_json: bool = False) -> str:
    """Recent jobs, one line each (or their records as JSON)."""
    jobs.ensure_reachable()
    records = jobs.list_jobs(limit)
    if as_json:
        return json.dumps(records, indent=2)
    if not records:
        return "no jobs"
    lines = [f"{'id':16}  {'kind':11}  {'state':9}  {'percent':>7}  {'blocks':>9}  created"]
    for job in records:
        blocks = f"{job['blocks_done']}/{job['blocks_total']}" if job["blocks_total"] else "-"
        line = (
            f"{job['id']:16}  {job['kind']:11}  {job['state']:9}  {job['percent']:6.1f}%  "
            f"{blocks:>9}  {job['created']}"
        )
        if job["error"]:
            line += f"  error: {job['error'][:80]}"
        lines.append(line)
    return "\n".join(lines)


def job_text(
    job_id: str, cancel: bool = False, resume: bool = False, follow_it: bool = False
) -> str:
    """One job's record as JSON, after cancelling, resuming or following it when asked."""
    jobs.ensure_reachable()
    if cancel:
        jobs.cancel_job(job_id)
    if resume or follow_it:
        from worker.submit import follow, resume_job

        job_id = resume_job(job_id) if resume else job_id
        if follow_it:
            follow(job_id)
    return json.dumps(jobs.require_job(job_id), indent=2)
