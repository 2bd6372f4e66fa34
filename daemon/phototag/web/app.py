"""The web app: HTML pages (Jinja2) and a JSON API under /api (OpenAPI at /api/openapi.json).

Every route but the login page needs a session cookie (HttpOnly, SameSite=Strict, Secure under
TLS); every state change also needs the session's CSRF token, in a form field or the
X-CSRF-Token header. Pages and API call the same `WebLibrary` methods. No `from __future__
import annotations` here: FastAPI reads the route signatures' dependency aliases at runtime.
"""

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from phototag import __version__, catalogue
from phototag.config import Config
from phototag.learn import suggest
from phototag.library.index import Index
from phototag.pipeline.tagger import Tagger
from phototag.records import Tag
from phototag.service import daemon
from phototag.web import auth, thumbs
from phototag.web.library import (
    Action,
    BadRequest,
    Keywords,
    NotServed,
    Page,
    Tagging,
    WebLibrary,
    narrowed,
)

SESSION_COOKIE = "phototag_session"
LOGIN_COOKIE = "phototag_login"  # the login form's CSRF token, before there is a session
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


# --- API shapes (the OpenAPI description is made from these) ---------------------------------


class Facet(BaseModel):
    tag: str
    photos: int


class PhotoList(BaseModel):
    query: str
    total: int
    page: int
    pages: int
    photos: list[str]
    facets: list[Facet]


class TagOut(BaseModel):
    path: str
    name: str
    score: float


class SuggestionOut(BaseModel):
    kind: str
    tag: str
    score: float
    instead: str | None


class DetectionOut(BaseModel):
    path: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of width, height
    model: str


class FaceOut(BaseModel):
    number: int  # as `phototag faces name PHOTO --face N` counts
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of width, height
    name: str | None
    source: str | None  # user, file or propagated


class PhotoOut(BaseModel):
    path: str
    yours: list[str]
    ours: list[TagOut]
    model_version: str | None
    deleted: list[str]
    suggested: list[SuggestionOut]
    taken: str | None
    width: int
    height: int
    detections: list[DetectionOut]
    learned: list[TagOut]
    learned_note: str
    faces: list[FaceOut]


class ReviewSuggestion(SuggestionOut):
    path: str


class ReviewOut(BaseModel):
    suggestions: list[ReviewSuggestion]
    after: str | None  # pass back to continue the queue; null: it ends here
    note: str


class KeywordChange(BaseModel):
    path: str
    action: Literal["accept", "reject", "remove", "add"]
    tag: str


class TagUrl(BaseModel):
    url: str
    save: str = ""  # a watched folder to save the photo into, then tag it there


class Tagged(BaseModel):
    name: str
    tags: list[TagOut]
    error: str | None
    saved: str | None = None  # where the photo was saved (and its keywords written)


class StatusOut(BaseModel):
    version: str
    photos: int
    models: list[str]
    service: str
    queued: int
    errors: list[str]


def tag_out(t: Tag) -> TagOut:
    return TagOut(path=t.path, name=t.name, score=round(t.score, 4))


def suggestion_out(s: suggest.Suggestion) -> ReviewSuggestion:
    return ReviewSuggestion(
        path=s.path, kind=s.kind, tag=s.tag, score=round(s.score, 4), instead=s.instead
    )


def photo_out(k: Keywords) -> PhotoOut:
    return PhotoOut(
        path=k.path,
        yours=k.yours,
        ours=[tag_out(t) for t in k.ours],
        model_version=k.model_version,
        deleted=k.deleted,
        suggested=[suggestion_out(s) for s in k.suggested],
        taken=k.taken,
        width=k.width,
        height=k.height,
        detections=[
            DetectionOut(path=d.path, score=round(d.score, 4), box=d.box, model=d.model)
            for d in k.detections
        ],
        learned=[tag_out(t) for t in k.learned],
        learned_note=k.learned_note,
        faces=[
            FaceOut(
                number=f.number,
                score=round(f.score, 4),
                box=f.box,
                name=f.name or None,
                source=f.source or None,
            )
            for f in k.faces
        ],
    )


def tagged_out(name: str, t: Tagging) -> Tagged:
    o, saved = t.outcome, str(t.saved) if t.saved else None
    return Tagged(name=name, tags=[tag_out(x) for x in o.tags], error=o.error, saved=saved)


def page_out(p: Page) -> PhotoList:
    facets = [Facet(tag=name, photos=n) for name, n in p.facets]
    return PhotoList(
        query=p.query, total=p.total, page=p.page, pages=p.pages, photos=p.paths, facets=facets
    )


# --- the app --------------------------------------------------------------------------------


def create_app(
    cfg: Config,
    index: Index,
    load_tagger: Callable[[], Tagger],
    users: Callable[[], dict[str, str]] = auth.load_users,
) -> FastAPI:
    """The app over an open index; `users` is re-read at each login, so `web passwd` applies."""
    lib = WebLibrary(cfg, index, load_tagger)
    sessions = auth.Sessions(cfg.web.session_hours)
    limit = auth.RateLimit(cfg.web.login_attempts)
    app = FastAPI(
        title="phototag",
        version=__version__,
        openapi_url=None,  # served below, behind the login like everything else
        docs_url=None,  # Swagger UI loads from a CDN; a local app must not need the network
        redoc_url=None,
    )
    app.state.library = lib

    def session(request: Request) -> auth.Session:
        found = sessions.get(request.cookies.get(SESSION_COOKIE))
        if found is None:
            if request.url.path.startswith("/api/"):
                raise HTTPException(401, "log in first")
            raise HTTPException(303, headers={"Location": "/login"})
        return found

    async def csrf_checked(request: Request, s: Annotated[auth.Session, Depends(session)]) -> None:
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            sent = (await request.form()).get("csrf")
        if not isinstance(sent, str) or not secrets.compare_digest(sent, s.csrf):
            raise HTTPException(403, "missing or wrong CSRF token")

    Session = Annotated[auth.Session, Depends(session)]
    Checked = Depends(csrf_checked)

    def cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=cfg.web.tls,
            path="/",
        )

    def render(request: Request, name: str, s: auth.Session | None, **values: object) -> Response:
        values |= {"csrf": s.csrf if s else "", "user": s.user if s else None}
        return TEMPLATES.TemplateResponse(request, name, values)

    def served(path: str) -> Keywords:
        try:
            return lib.keywords(path)
        except NotServed:
            raise HTTPException(404, "no such photo in the library") from None
        except BadRequest as exc:
            raise HTTPException(400, str(exc)) from None

    # --- login ---------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, error: str = "") -> Response:
        token = secrets.token_urlsafe(auth.TOKEN_BYTES)
        response = TEMPLATES.TemplateResponse(
            request, "login.html", {"login_csrf": token, "error": error[:100], "user": None}
        )
        cookie(response, LOGIN_COOKIE, token, max_age=3600)
        return response

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        csrf: Annotated[str, Form()],
    ) -> Response:
        client = request.client.host if request.client else "?"
        if limit.blocked(client):
            raise HTTPException(429, "too many failed logins; wait a minute")
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(csrf, expected):
            raise HTTPException(403, "missing or wrong CSRF token")
        stored = users().get(username)
        if stored is None or not auth.check_password(password, stored):
            limit.failed(client)
            return RedirectResponse("/login?error=wrong+user+or+password", 303)
        token, _ = sessions.start(username)
        response = RedirectResponse("/", 303)
        cookie(response, SESSION_COOKIE, token, max_age=int(cfg.web.session_hours * 3600))
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.post("/logout", include_in_schema=False, dependencies=[Checked])
    def logout(request: Request) -> Response:
        sessions.end(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- pages ---------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def library_page(
        request: Request,
        s: Session,
        q: str = "",
        page: int = 1,
        folder: str = "",
        source: Literal["any", "user", "auto"] = "any",
        taken_from: Annotated[str, Query(alias="from")] = "",
        taken_to: Annotated[str, Query(alias="to")] = "",
    ) -> Response:
        try:
            found, error = lib.search(q, page, folder or None, source, taken_from, taken_to), ""
        except BadRequest as exc:
            found, error = Page(q, 0, 1, 1, []), str(exc)
        return render(
            request,
            "library.html",
            s,
            found=found,
            error=error,
            folder=folder,
            source=source,
            taken_from=taken_from,
            taken_to=taken_to,
            narrowed=narrowed,
        )

    @app.get("/photo", response_class=HTMLResponse, include_in_schema=False)
    def photo_page(request: Request, s: Session, path: str, error: str = "") -> Response:
        return render(request, "photo.html", s, photo=served(path), error=error[:200])

    @app.post("/photo", include_in_schema=False, dependencies=[Checked])
    def photo_change(
        path: Annotated[str, Form()],
        action: Annotated[Action, Form()],
        tag: Annotated[str, Form()],
        back: Annotated[str, Form()] = "",
    ) -> Response:
        """A keyword change from the photo page or the review queue (`back`: return there)."""
        error = ""
        try:
            lib.change(path, action, tag)
        except NotServed:
            raise HTTPException(404, "no such photo in the library") from None
        except BadRequest as exc:
            error = str(exc)
        where = (
            back
            if back.startswith("/review?") or back == "/review"
            else (f"/photo?path={quote(path)}")
        )
        sep = "&" if "?" in where else "?"
        return RedirectResponse(where + (f"{sep}error={quote(error[:200])}" if error else ""), 303)

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review_page(request: Request, s: Session, after: str = "", error: str = "") -> Response:
        queue = lib.review(after)
        back = f"/review?after={quote(after)}" if after else "/review"
        groups = [] if after else lib.face_groups()  # people first, on the queue's first page
        return render(
            request, "review.html", s, queue=queue, back=back, error=error[:200], groups=groups
        )

    @app.post("/review/people", include_in_schema=False, dependencies=[Checked])
    def name_group(group: Annotated[int, Form()], name: Annotated[str, Form()]) -> Response:
        """Name a group of unnamed faces from the review queue, as `phototag faces name`."""
        try:
            lib.name_group(group, name)
        except BadRequest as exc:
            return RedirectResponse(f"/review?error={quote(str(exc)[:200])}", 303)
        return RedirectResponse("/review", 303)

    @app.get("/upload", response_class=HTMLResponse, include_in_schema=False)
    def upload_page(request: Request, s: Session) -> Response:
        return render(request, "upload.html", s, result=None, folders=cfg.watch.folders)

    @app.post("/upload", response_class=HTMLResponse, include_in_schema=False)
    async def upload(
        request: Request,
        s: Session,
        _: Annotated[None, Checked],
        file: Annotated[UploadFile | None, File()] = None,
        url: Annotated[str, Form()] = "",
        save: Annotated[str, Form()] = "",
    ) -> Response:
        result = await _tag_request(lib, file, url, save)
        return render(request, "upload.html", s, result=result, folders=cfg.watch.folders)

    @app.get("/status", response_class=HTMLResponse, include_in_schema=False)
    def status_page(request: Request, s: Session) -> Response:
        return render(request, "status.html", s, status=_status(lib))

    # --- the JSON API ----------------------------------------------------------------------

    @app.get("/api/photos")
    def api_photos(
        _: Session,
        q: str = "",
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        folder: str = "",
        source: Literal["any", "user", "auto"] = "any",
        taken_from: Annotated[str, Query(alias="from")] = "",
        taken_to: Annotated[str, Query(alias="to")] = "",
    ) -> PhotoList:
        """Photos matching a `phototag search` query (empty: all), a page at a time, with the tag
        facets (names and counts) of all of them; `from`/`to` as in `search --from/--to`."""
        try:
            return page_out(lib.search(q, page, folder or None, source, taken_from, taken_to))
        except BadRequest as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/api/photo")
    def api_photo(_: Session, path: str) -> PhotoOut:
        """One photo's keywords: yours, ours with scores, those deleted, suggestions."""
        return photo_out(served(path))

    @app.get(
        "/api/thumbnail",
        response_class=FileResponse,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def api_thumbnail(
        _: Session, path: str, size: Literal["thumb", "preview"] = "thumb"
    ) -> FileResponse:
        """A cached JPEG of the photo (made once, kept in the XDG cache)."""
        try:
            record = lib.record(path)
            cached = thumbs.thumbnail(Path(record.path), thumbs.SIZES[size], cfg.scan.max_pixels)
        except NotServed:
            raise HTTPException(404, "no such photo in the library") from None
        except (thumbs.ThumbnailError, OSError) as exc:
            raise HTTPException(422, str(exc).splitlines()[0]) from None
        return FileResponse(
            cached, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )

    @app.post("/api/keywords", dependencies=[Checked])
    def api_keywords(_: Session, change: KeywordChange) -> PhotoOut:
        """Accept or add a keyword as yours, reject one (never proposed again), or remove one."""
        try:
            return photo_out(lib.change(change.path, change.action, change.tag))
        except NotServed:
            raise HTTPException(404, "no such photo in the library") from None
        except BadRequest as exc:
            raise HTTPException(400, str(exc)) from None

    @app.post("/api/tag", dependencies=[Checked])
    async def api_tag(
        _: Session, file: Annotated[UploadFile, File()], save: Annotated[str, Form()] = ""
    ) -> Tagged:
        """Tags for an uploaded photo; stored only with `save`, a watched folder to save it
        into (under a new name) and tag it there."""
        result = await _tag_request(lib, file, "", save)
        if result.error and not result.tags:
            raise HTTPException(422, result.error)
        return result

    @app.post("/api/tag-url", dependencies=[Checked])
    def api_tag_url(_: Session, body: TagUrl) -> Tagged:
        """Tags for a photo on the web (public addresses only, size and time limits); `save`
        as for /api/tag."""
        try:
            tagging = lib.tag_url(body.url, body.save)
        except BadRequest as exc:
            raise HTTPException(422, str(exc)) from None
        if tagging.outcome.error:
            raise HTTPException(422, tagging.outcome.error)
        return tagged_out(body.url, tagging)

    @app.get("/api/review")
    def api_review(_: Session, after: str = "") -> ReviewOut:
        """The review queue: TagProp and CNN suggestions across the library, photos in path
        order after `after`; accept or reject them with /api/keywords."""
        queue = lib.review(after)
        return ReviewOut(
            suggestions=[suggestion_out(x) for x in queue.suggestions],
            after=queue.after,
            note=queue.note,
        )

    @app.get("/api/openapi.json", include_in_schema=False)
    def api_openapi(_: Session) -> dict[str, object]:
        return app.openapi()

    @app.get("/api/status")
    def api_status(_: Session) -> StatusOut:
        """Library counts, installed models, the service's state and its last errors."""
        return _status(lib)

    return app


async def _tag_request(
    lib: WebLibrary, file: UploadFile | None, url: str, save: str = ""
) -> Tagged:
    """Tags for an upload or a URL, as the upload page and the API show them."""
    try:
        if file is not None and file.filename:
            data = await file.read(lib.cfg.web.max_upload_bytes + 1)
            name = Path(file.filename).name
            return tagged_out(name, lib.tag_upload(name, data, save))
        if url.strip():
            return tagged_out(url.strip(), lib.tag_url(url.strip(), save))
    except BadRequest as exc:
        return Tagged(name=file.filename if file else url, tags=[], error=str(exc))
    return Tagged(name="", tags=[], error="choose a photo or give a URL")


def _status(lib: WebLibrary) -> StatusOut:
    try:
        st = daemon.status()
    except daemon.ServiceError as exc:
        st, state = None, str(exc)
    else:
        state = "not running" if st is None or not st.running else st.state
    errors = [f"{e.path}: {e.message}" for e in st.errors[:20]] if st else []
    return StatusOut(
        version=__version__,
        photos=len(lib.index),
        models=[m.spec.ref for m in catalogue.installed()],
        service=state,
        queued=st.queued if st and st.running else 0,
        errors=errors,
    )
