-- Argo CD health check for nas.iac.dev/IACSearch.
-- Install it as resource.customizations.health.nas.iac.dev_IACSearch in argocd-cm
-- (docs/gitops.md). Argo CD runs it in Lua 5.1 with the live object as `obj`.
--
--   Healthy     phase Succeeded
--   Degraded    phase Failed, or condition Stalled=True (e.g. an invalid spec)
--   Suspended   phase Suspended (spec.suspend, or a budget with action Suspend)
--   Progressing anything else, including a spec change the operator has not seen yet
local hs = { status = "Progressing", message = "Waiting for the operator to reconcile the search" }

local function condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local status = obj.status
if status == nil then
  return hs
end

-- kstatus: a status older than the spec says nothing about the spec.
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")

if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(stalled, describe(ready, "Search failed"))
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Search is stalled")
  return hs
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  local dice = status.results ~= nil and status.results.meanDice or nil
  if type(dice) == "number" then
    hs.message = string.format("Search succeeded, mean Dice %.3f", dice)
  else
    hs.message = describe(ready, "Search succeeded")
  end
  return hs
end
if phase == "Suspended" then
  hs.status = "Suspended"
  local budget = condition(status, "BudgetExceeded")
  if budget ~= nil and budget.status == "True" then
    hs.message = describe(budget, "Suspended: budget exceeded")
  else
    hs.message = describe(ready, "Search is suspended")
  end
  return hs
end

-- Pending or a running phase: say where it is.
local p = status.progress
if phase ~= nil and p ~= nil and p.epoch ~= nil then
  local text = phase .. ": epoch " .. tostring(p.epoch)
  if p.maxEpochs ~= nil then
    text = text .. "/" .. tostring(p.maxEpochs)
  end
  if p.stableEdges ~= nil and p.totalEdges ~= nil then
    text = text .. ", " .. tostring(p.stableEdges) .. "/" .. tostring(p.totalEdges) .. " edges stable"
  end
  hs.message = text
elseif phase ~= nil then
  hs.message = describe(condition(status, "Reconciling"), phase)
end
return hs
