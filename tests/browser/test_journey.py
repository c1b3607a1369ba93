"""The whole journey in a browser: a requester submits from a template, a Celery worker
generates, a reviewer approves with the keyboard, an auditor finds the output, reads its
lineage and exports CSV; and a requester who also reviews is refused on their own output."""

import csv
import io
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from generation.models import GenerationJob, JobStatus, Output, ReviewStatus
from generation.services import job_execute
from governance.approvals.services import team_member_add
from governance.roles import Role, role_grant
from tests.browser.conftest import sign_in
from tests.workers import CeleryWorker, declare_and_purge_queue

pytestmark = [pytest.mark.services, pytest.mark.timeout(420)]


def person(username, *roles):
    user = get_user_model().objects.create_user(username, password=f"pw-{username}-123456")
    for role in roles:
        role_grant(user=user, role=role, granted_by=None)
    return user


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    declare_and_purge_queue()
    worker = CeleryWorker(tmp_path, "browser")
    worker.start()
    yield worker
    worker.stop()


def test_requester_to_reviewer_to_auditor_in_the_browser(
    open_page, shoot, template_version, team, requester, celery_worker, s3_bucket
):
    reviewer = person("rory", Role.REVIEWER)
    person("audrey", Role.AUDITOR)

    # 1. The requester fills in the template; the live lint shows where each term falls.
    rita = open_page()
    sign_in(rita, "rita", "pw-rita-123456")
    rita.click("text=New request")
    rita.click("[data-template=shapes]")
    rita.select_option("#var-size", "large")
    rita.select_option("#var-colour", "red")
    rita.fill("#var-shape", "circle")
    preview = rita.locator("#lint-panel .caption-preview")
    preview.filter(has_text="a large red circle, white background").wait_for()
    rita.locator(".tokenbar [data-term=colour]").wait_for()
    assert "tokens" in rita.inner_text("#lint-panel .token-count")
    shoot(rita, "requester-form")
    # The same form in Japanese: labels and lint translated, the caption still English.
    rita.select_option("#language-select", "ja")
    rita.locator("text=ライブチェック").wait_for()
    rita.select_option("#var-size", "large")
    rita.select_option("#var-colour", "red")
    assert rita.locator("#var-colour option:checked").inner_text() == "赤"
    rita.fill("#var-shape", "circle")
    preview.filter(has_text="a large red circle, white background").wait_for()
    rita.locator("#lint-panel .token-count").filter(has_text="77 トークン中").wait_for()
    shoot(rita, "requester-form-ja")
    rita.select_option("#variations", "2")
    rita.click("#submit-request")

    # 2. The Celery worker generates both variations while the page shows their progress.
    rita.wait_for_url("**/requests/*/")
    rita.locator("#gallery figure").nth(1).wait_for(timeout=180_000)
    assert rita.locator("#progress .badge.succeeded").count() == 2, celery_worker.logs()[-2000:]
    assert rita.locator("#gallery .badge.pending").count() == 2
    shoot(rita, "request-progress-gallery")
    request_url = rita.url

    # 3. The reviewer decides from the queue with the keyboard: tick 1 and 2, approve.
    rory = open_page()
    sign_in(rory, "rory", "pw-rory-123456")
    rory.click("text=Review queue")
    assert rory.locator(".queue-item [data-review]").count() == 2
    shoot(rory, "review-queue")
    rory.locator(".queue-item [data-review]").first.click()
    rory.locator("#decision-form").wait_for()
    shoot(rory, "review-decision")
    rory.keyboard.press("1")
    rory.keyboard.press("2")
    rory.keyboard.press("a")
    rory.locator(".messages li.success").wait_for()
    # The second variation is next: reject it with a comment (R, type, Ctrl+Enter).
    rory.keyboard.press("r")
    rory.keyboard.type("The circle is cut off at the edge")
    rory.keyboard.press("Control+Enter")
    rory.wait_for_url("**/review/")
    outputs = list(Output.objects.order_by("job__variation"))
    assert [o.review_status for o in outputs] == [ReviewStatus.APPROVED, ReviewStatus.REJECTED]
    assert outputs[0].review_decisions.get().reviewer == reviewer
    approved = outputs[0]

    # 4. The requester sees the approved image released for download.
    rita.goto(request_url)
    assert rita.locator(f"[data-output='{approved.pk}'] a[download]").count() == 1
    assert rita.locator("#gallery .badge.approved").count() == 1
    shoot(rita, "gallery-released")

    # 5. The auditor finds the output, reads its lineage and exports the search as CSV.
    audrey = open_page()
    sign_in(audrey, "audrey", "pw-audrey-123456")
    audrey.click("text=Audit")
    audrey.fill("input[name=person]", "rory")
    audrey.select_option("select[name=review_status]", "approved")
    audrey.click("#search-form button[type=submit]")
    assert audrey.locator("#results [data-lineage]").count() == 1
    audrey.click("#verify-chain")
    audrey.locator("#chain-status .chain-ok").wait_for()
    shoot(audrey, "audit-search")
    with audrey.expect_download() as download:
        audrey.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [row["output"] for row in rows] == [str(approved.pk)]
    assert rows[0]["last_reviewer"] == "rory" and rows[0]["requested_by"] == "rita"
    audrey.click("#results [data-lineage]")
    assert audrey.inner_text("#lineage-requester") == "rita"
    assert audrey.inner_text("#lineage-sha") == approved.sha256
    assert "rory" in audrey.inner_text("#lineage-review-1")
    assert "review.approved" in audrey.inner_text("#lineage-events")
    shoot(audrey, "audit-lineage")


def test_a_requester_who_also_reviews_is_refused_on_their_own_output(
    open_page, shoot, template_version, team, s3_bucket
):
    sam = person("sam", Role.REQUESTER, Role.REVIEWER)
    team_member_add(team=team, user=sam, added_by=None)
    page = open_page()
    sign_in(page, "sam", "pw-sam-123456")
    page.goto(f"/templates/{template_version.pk}/new/")
    page.select_option("#var-size", "small")
    page.select_option("#var-colour", "blue")
    page.fill("#var-shape", "square")
    page.select_option("#variations", "1")
    page.click("#submit-request")
    page.wait_for_url("**/requests/*/")
    job = GenerationJob.objects.get(request__requested_by=sam)
    assert job_execute(job_id=job.id, worker="test") == JobStatus.SUCCEEDED
    output = Output.objects.get(job=job)
    # The request page polls and reloads itself once every job has finished; leaving before
    # that reload lands let it cut off the next navigation (seen once in CI).
    page.locator("#progress[data-finished='1']").wait_for()

    page.goto("/review/")
    assert page.locator("[data-review]").count() == 0  # not offered in the queue
    page.goto(f"/review/{output.pk}/")
    for box in page.locator(".checklist input").all():
        box.check()
    page.click("#approve-button")
    refusal = page.locator(".messages li.refusal")
    refusal.wait_for()
    assert "Separation of duties" in refusal.inner_text()
    assert "sam requested" in refusal.inner_text()
    shoot(page, "self-approval-refused")
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.PENDING
