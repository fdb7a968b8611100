-- Argo CD health check for nas.iac.dev/IACSearchSet (a fleet of IACSearches, docs/fleets.md).
-- Install it as resource.customizations.health.nas.iac.dev_IACSearchSet in argocd-cm, beside
-- health.lua for IACSearch (docs/gitops.md). Argo CD runs it in Lua 5.1 with the live object
-- as `obj`.
--
--   Healthy     phase Succeeded (every child succeeded; Ready=True)
--   Degraded    phase Failed (a child failed, or the budget with action Fail), or
--               condition Stalled=True (e.g. an invalid template or matrix)
--   Suspended   phase Suspended (the set's budget with action Suspend holds its children)
--   Progressing anything else: children running or waiting (maxParallel), or a spec change
--               the operator has not seen yet
local hs = { status = "Progressing", message = "Waiting for the operator to reconcile the set" }

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

-- "2/6 children succeeded, 2 running, 1 queued, 1 failed" from the status counts (nil without them).
local function counts(status)
  if type(status.children) ~= "number" then
    return nil
  end
  local text = tostring(status.succeeded or 0) .. "/" .. tostring(status.children) .. " children succeeded"
  for _, k in ipairs({ "running", "queued", "suspended", "failed" }) do
    local n = status[k]
    if type(n) == "number" and n > 0 then
      text = text .. ", " .. tostring(n) .. " " .. k
    end
  end
  return text
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
  hs.message = describe(stalled, describe(ready, "Set failed"))
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Set is stalled")
  return hs
end
if phase == "Succeeded" or (ready ~= nil and ready.status == "True") then
  hs.status = "Healthy"
  local text = counts(status)
  local best = status.bestChild
  if text ~= nil and best ~= nil and type(best.testDice) == "number" then
    hs.message = text .. string.format(", best test Dice %.3f (%s)", best.testDice, tostring(best.name))
  else
    hs.message = text or describe(ready, "Every child succeeded")
  end
  return hs
end
if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(condition(status, "BudgetExceeded"), describe(ready, "Set is suspended by its budget"))
  return hs
end

-- Pending or Running: children run or wait for a slot.
local text = counts(status)
if text ~= nil then
  hs.message = (phase or "Pending") .. ": " .. text
else
  hs.message = describe(condition(status, "Reconciling"), phase or hs.message)
end
return hs
