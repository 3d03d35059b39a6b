-- Argo CD health check for zoom-operator.io/ZoomConnection (Lua 5.1, as Argo CD's gopher-lua).
-- Healthy when Ready=True; Progressing while the operator has not reported on the current
-- generation yet or the connection awaits its browser authorization; Degraded otherwise, with
-- the operator's message (what is wrong and what to do).
local hs = {}
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for zoom-operator to report status"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for zoom-operator to observe generation " .. tostring(generation)
  return hs
end
local ready = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = (ready and ready.message) or "Waiting for the Ready condition"
  return hs
end
local message = ready.message or ""
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
elseif ready.reason == "AwaitingAuthorization" then
  hs.status = "Progressing"
  hs.message = "AwaitingAuthorization: " .. message
else
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. message
end
return hs
