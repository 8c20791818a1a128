"""The web page's HTTP interface (Starlette): the page and its assets, uploads that become jobs
(pipeline.apps.web.jobs), their state, previews and downloads.

Routes (all under one origin; the page is static and calls the /api routes with fetch):

- ``GET /``: the page; ``GET /static/...``: its script and style, shipped with the package;
- ``GET /api/info``: the defaults and bounds the page shows, the shipped paintings;
- ``POST /api/colorize?client=&name=[&vividness=&saturation=&seed=&steps=]`` (body: the photo's
  bytes): a job; ``POST /api/stylize?client=&name=&painting=[&seed=&steps=&size=&style_weight=]``:
  a job painting the photo in a shipped painting (its file name) or one sent before with
  ``POST /api/paintings?name=`` (the id it answers);
- ``GET /api/jobs/{id}``: its state; ``/preview/{gray|result}``: a small JPEG to show;
  ``/file``: the output at full resolution; ``GET /api/zip?ids=a,b``: outputs as one zip.

Bad input is answered 400 (a setting out of range, named as the command names it), 413 (a body
above MAX_UPLOAD_BYTES) or 429 (the queue is full); a photo that cannot be read or is too large
fails its own job with the command's message, nothing else is affected. A POST from another
origin (a web site the browser is on) is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import re
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.apps.args import float_in, int_in, seed
from pipeline.apps.stylize import check_side, paint
from pipeline.apps.web.jobs import Job, JobQueue, QueueFull, message
from pipeline.imagefile import read_rgb
from pipeline.io import OutputExistsError, file_digest
from pipeline.photo import decoding
from pipeline.photo_colorizer import SATURATIONS, Colorizer
from pipeline.reports.grid import save_image
from pipeline.style.choice import FeatureChoice, build_features
from pipeline.style.transfer import MAX_STEPS, MAX_WEIGHT, SIZES, StyleOptions, to_tensor

STATIC = Path(__file__).parent / "static"
PAINTINGS = Path(__file__).parents[2] / "style" / "paintings"
MAX_UPLOAD_BYTES = 256 * 2**20  # one photo's file; its pixels are bounded by --max-megapixels
PREVIEW_SIDE = 1024  # the longer side of the pictures the page shows (downloads: full size)
UPLOADS = ".pipeline-serve-uploads"  # in --out, removed when the server stops
MAX_NAME = 100  # characters of an output's name


class BadRequest(ValueError):
    """Answered 400 with its message."""


@dataclass(frozen=True)
class Painting:
    file: str
    painter: str
    title: str
    sha256: str


def shipped_paintings() -> dict[str, Painting]:
    """The paintings shipped in pipeline/style/paintings, by file name (index.csv)."""
    with open(PAINTINGS / "index.csv", newline="") as f:
        return {row["file"]: Painting(row["file"], row["painter"], row["title"], row["sha256"])
                for row in csv.DictReader(f)}  # fmt: skip


def output_stem(name: str) -> str:
    """An uploaded file's name as an output's: its last component without suffix, characters
    other than letters, digits, ``-_.`` and spaces as ``_``, at most MAX_NAME; ``photo`` if
    nothing is left."""
    stem = Path(name.replace("\\", "/")).name.rsplit(".", 1)[0]
    stem = re.sub(r"[^\w\-. ]", "_", stem).strip(" .")[:MAX_NAME]
    return stem or "photo"


def write_new(image: np.ndarray, folder: Path, stem: str) -> Path:
    """``image`` written as folder/stem.png, or stem_2.png, stem_3.png ... where that exists:
    never over a file (pipeline.io.atomic_path publishes without replacing)."""
    for k in range(1, 10_000):
        target = folder / f"{stem}{'' if k == 1 else f'_{k}'}.png"
        if target.exists():
            continue
        try:
            return save_image(image, target, overwrite=False)
        except OutputExistsError:  # taken meanwhile
            continue
    raise OSError(f"{folder}: no free name for {stem}.png")


def jpeg(rgb: np.ndarray) -> bytes:
    """A uint8 image (H, W[, 3]) at most PREVIEW_SIDE on its longer side, as JPEG bytes."""
    image = Image.fromarray(rgb)
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def parse(request: Request, name: str, kind: Callable[[str], object], default=None):
    """Query parameter ``name`` through an argparse ``type`` (pipeline.apps.args): BadRequest
    naming it as the command names its option."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        return kind(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise BadRequest(f"{name.replace('_', '-')}: {exc}") from None


class Studio:
    """What the page works with: the colorizer (loaded once), the style features (per seed),
    the output folder and the queue."""

    def __init__(self, colorizer: Colorizer, out: Path, max_pixels: int) -> None:
        self.colorizer, self.out, self.max_pixels = colorizer, out, max_pixels
        self.device = str(colorizer.model.device)  # the style transfer runs beside it
        self.uploads = out / UPLOADS
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.paintings = shipped_paintings()
        self.own_paintings: dict[str, tuple[Path, str]] = {}  # id -> upload, its name
        self.features: dict[int, torch.nn.Module] = {}
        self.queue = JobQueue()

    def close(self) -> None:
        self.queue.stop()
        for path in self.uploads.iterdir():
            path.unlink()
        self.uploads.rmdir()

    async def receive(self, request: Request) -> Path:
        """The request's body in a new file under the uploads folder; 413 above MAX_UPLOAD_BYTES."""
        path = self.uploads / uuid.uuid4().hex
        size = 0
        try:
            with open(path, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise TooLarge(
                            f"the file is above {MAX_UPLOAD_BYTES // 2**20} MB; photos are "
                            "read up to --max-megapixels"
                        )
                    f.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def colorize_job(self, request: Request) -> Callable[[Job], Path]:
        """The work of one colorization with the request's settings (checked now)."""
        chosen = decoding(
            self.colorizer.guide is not None,
            parse(request, "vividness", float_in(0.0, 1.0)),
            parse(request, "saturation", float_in(*SATURATIONS)),
        )
        steps = parse(request, "steps", int_in(1, self.colorizer.model.params.diffusion.timesteps))
        chosen_seed = parse(request, "seed", seed, 0)

        def run(job: Job) -> Path:
            rgb = read_rgb(job.upload, self.max_pixels)
            job.previews["gray"] = jpeg(np.asarray(Image.fromarray(rgb).convert("L")))
            job.progress = 0.1
            image = next(self.colorizer.colorize(
                rgb, seed=chosen_seed, steps=steps, vividness=chosen.vividness,
                saturation=chosen.saturation))  # fmt: skip
            job.progress = 0.9
            job.previews["result"] = jpeg(image)
            return write_new(image, self.out, output_stem(job.name))

        return run

    def stylize_job(self, request: Request) -> Callable[[Job], Path]:
        """The work of one stylization with the request's settings and painting (checked now)."""
        defaults = StyleOptions()
        try:
            options = StyleOptions(
                content_weight=defaults.content_weight,
                style_weight=parse(request, "style_weight", float_in(0.0, MAX_WEIGHT),
                                   defaults.style_weight),
                steps=parse(request, "steps", int_in(1, MAX_STEPS), defaults.steps),
                size=parse(request, "size", int_in(*SIZES), defaults.size),
                passes=defaults.passes,
                seed=parse(request, "seed", seed, defaults.seed),
            )  # fmt: skip
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        painting, painting_name = self.painting(request.query_params.get("painting", ""))
        features = self.features_for(options.seed)

        def run(job: Job) -> Path:
            rgb = check_side(read_rgb(job.upload, self.max_pixels))
            style = to_tensor(read_rgb(painting, self.max_pixels), self.device)  # when it runs
            job.previews["gray"] = jpeg(rgb)  # the photo before
            total, done = options.steps * options.passes, 0

            def advance(evaluations: int) -> None:
                nonlocal done
                done += evaluations
                job.progress = min(done / total, 0.99)

            image = paint(rgb, style, features, options, on_step=advance)
            job.previews["result"] = jpeg(image)
            stem = f"{output_stem(job.name)}_{output_stem(painting_name)}"
            return write_new(image, self.out, stem)

        return run

    def painting(self, key: str) -> tuple[Path, str]:
        """A shipped painting by file name (its sha256 checked) or one sent before, by its id:
        its file and its name."""
        if key in self.own_paintings:
            return self.own_paintings[key]
        if key not in self.paintings:
            raise BadRequest(
                f"painting: {key!r} is not one of {', '.join(self.paintings)} or a painting sent "
                "with this page"
            )
        path = PAINTINGS / key
        if file_digest(path) != self.paintings[key].sha256:
            raise BadRequest(f"painting: {path} does not have the sha256 index.csv gives")
        return path, key

    def features_for(self, chosen_seed: int) -> torch.nn.Module:
        if chosen_seed not in self.features:
            self.features[chosen_seed] = build_features(FeatureChoice(), chosen_seed, self.device)
        return self.features[chosen_seed]


class TooLarge(ValueError):
    """Answered 413."""


class Routes:
    """The handlers of the module docstring's routes over one ``Studio``."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def info(self, request: Request) -> JSONResponse:
        guided = self.studio.colorizer.guide is not None
        chosen = decoding(guided, None, None)
        options = StyleOptions()
        return JSONResponse({
            "out": str(self.studio.out),
            "colorize": {"vividness": chosen.vividness, "saturation": chosen.saturation,
                         "steps": self.studio.colorizer.steps(None), "seed": 0,
                         "max_saturation": SATURATIONS[1]},
            "stylize": {"steps": options.steps, "size": options.size,
                        "style_weight": options.style_weight, "seed": options.seed,
                        "sizes": list(SIZES)},
            "max_megapixels": self.studio.max_pixels / 1e6,
            "paintings": [{"file": p.file, "title": f"{p.title}, {p.painter}"}
                          for p in self.studio.paintings.values()],
        })  # fmt: skip

    async def submit(self, request: Request, make: Callable[[Request], Callable[[Job], Path]]):
        client = request.query_params.get("client", "")
        name = request.query_params.get("name", "")
        if not re.fullmatch(r"[\w-]{1,64}", client) or not name:
            raise BadRequest("client (a page's id) and name (the file's) are required")
        run = make(request)  # settings checked before the upload is read
        upload = await self.studio.receive(request)
        job = Job(uuid.uuid4().hex, client, name, run, upload)
        try:
            position = self.studio.queue.submit(job)
        except QueueFull:
            upload.unlink(missing_ok=True)
            raise
        return JSONResponse({"id": job.id, "position": position})

    async def colorize(self, request: Request) -> JSONResponse:
        return await self.submit(request, self.studio.colorize_job)

    async def stylize(self, request: Request) -> JSONResponse:
        return await self.submit(request, self.studio.stylize_job)

    async def own_painting(self, request: Request) -> JSONResponse:
        name = request.query_params.get("name", "painting")
        path = await self.studio.receive(request)
        try:
            check_side(read_rgb(path, self.studio.max_pixels))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            path.unlink()
            raise BadRequest(f"painting {name}: {message(exc, path, name)}") from None
        key = f"own-{path.name}"
        self.studio.own_paintings[key] = (path, name)
        return JSONResponse({"painting": key})

    def job_of(self, request: Request) -> Job:
        job = self.studio.queue.get(request.path_params["id"])
        if job is None:
            raise LookupError(f"no job {request.path_params['id']}")
        return job

    def state(self, request: Request) -> JSONResponse:
        job = self.job_of(request)
        return JSONResponse({
            "state": job.state, "progress": job.progress, "error": job.error,
            "position": self.studio.queue.position(job) if job.state == "queued" else 0,
            "output": job.output.name if job.output else None, "seconds": job.seconds,
        })  # fmt: skip

    def preview(self, request: Request) -> Response:
        data = self.job_of(request).previews.get(request.path_params["kind"])
        if data is None:
            raise LookupError("no such preview yet")
        return Response(data, media_type="image/jpeg")

    def download(self, request: Request) -> FileResponse:
        job = self.job_of(request)
        if job.output is None:
            raise LookupError(f"job {job.id} has no output ({job.state})")
        return FileResponse(job.output, filename=job.output.name, media_type="image/png")

    def bundle(self, request: Request) -> FileResponse:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        outputs = [job.output for i in ids if (job := self.studio.queue.get(i)) and job.output]
        if not outputs:
            raise LookupError("none of these jobs has an output")
        path = self.studio.uploads / f"{uuid.uuid4().hex}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:  # PNGs: compressed
            for output in outputs:
                archive.write(output, output.name)
        return FileResponse(
            path,
            filename="colorized.zip",
            media_type="application/zip",
            background=BackgroundTask(path.unlink),
        )

    async def errors(self, request: Request, exc: Exception) -> JSONResponse:
        status = {BadRequest: 400, TooLarge: 413, QueueFull: 429, LookupError: 404}
        code = next(c for kind, c in status.items() if isinstance(exc, kind))
        return JSONResponse({"error": str(exc)}, status_code=code)

    async def same_origin(self, request: Request, call_next):
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.url.netloc}"
        if request.method == "POST" and origin and origin != own:
            return JSONResponse({"error": "requests from other sites are refused"}, 403)
        return await call_next(request)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        yield
        self.studio.close()  # at shutdown (uvicorn then re-raises the signal that stopped it)


def build_app(studio: Studio) -> Starlette:
    """The routes of the module docstring over ``studio``."""
    routes = Routes(studio)
    return Starlette(
        lifespan=routes.lifespan,
        routes=[
            Route("/", lambda request: FileResponse(STATIC / "index.html")),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Route("/api/info", routes.info),
            Route("/api/colorize", routes.colorize, methods=["POST"]),
            Route("/api/stylize", routes.stylize, methods=["POST"]),
            Route("/api/paintings", routes.own_painting, methods=["POST"]),
            Route("/api/jobs/{id}", routes.state),
            Route("/api/jobs/{id}/preview/{kind}", routes.preview),
            Route("/api/jobs/{id}/file", routes.download),
            Route("/api/zip", routes.bundle),
        ],
        exception_handlers={
            kind: routes.errors for kind in (BadRequest, TooLarge, QueueFull, LookupError)
        },
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=routes.same_origin)],
    )
