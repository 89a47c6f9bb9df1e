"""Who a developer key belongs to (`guanaco whoami`)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from guanaco_dagster.service.dependencies import DeveloperDep, SessionDep
from guanaco_dagster.service.schemas import DeveloperInfo
from guanaco_dagster.store.models import Submission

router = APIRouter(tags=["developers"])


@router.get("/developers/me", response_model=DeveloperInfo, summary="The developer the key belongs to")
def whoami(session: SessionDep, developer: DeveloperDep) -> DeveloperInfo:
    count = session.scalar(select(func.count()).where(Submission.developer_id == developer.id))
    return DeveloperInfo(developer=developer.name, submissions=count or 0)
