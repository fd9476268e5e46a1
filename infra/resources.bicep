// Everything Multiline needs in one resource group. Identity: one user-assigned managed identity used
// by the Function App, the Azure ML compute cluster and the Event Grid system topic (dead-lettering),
// with the least built-in roles that work. No keys anywhere: every data-plane access is Entra ID.

param environmentName string
param location string
param tags object
param deployEventSubscription bool
param trainingVmSize string
param trainingMaxNodes int

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
// Every container of shared/settings.Containers (the code also creates missing ones), plus the dead letters.
var dataContainers = ['raw', 'models', 'runs', 'jobs', 'artifacts', 'images', 'predictions', 'deadletter']
var functionAppName = 'func-${token}'

// Built-in role definition ids.
var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  azureMLDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
  containerRegistryTasksContributor: 'fb382eab-e894-4461-af04-94435c366c3f'
  acrPush: '8311e382-0749-4cb8-b61a-304f252e45ec'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${token}'
  location: location
  tags: tags
}

// ---- data storage: the raw uploads and every document the product writes --------------------------
resource data 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stdata${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: data
  name: 'default'
}

resource dataContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in dataContainers: {
  parent: dataBlobs
  name: name
}]

// ---- host storage: the Functions runtime, Durable Functions task hub, deployment package -----------
resource host 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'sthost${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: host
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: 'deploymentpackage'
}

// ---- monitoring --------------------------------------------------------------------------------------
resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${token}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

// ---- container registry: ACR Tasks build the edge images ---------------------------------------------
resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: 'cr${token}'
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: {
    adminUserEnabled: false
  }
}

// ---- Azure ML: workspace, its own storage and key vault, the training cluster, datastores, environment
resource mlStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stml${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${token}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' = {
  name: 'mlw-${token}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  sku: { name: 'Basic', tier: 'Basic' }
  properties: {
    friendlyName: 'Multiline'
    storageAccount: mlStorage.id
    keyVault: vault.id
    applicationInsights: insights.id
    containerRegistry: registry.id
  }
}

resource cluster 'Microsoft.MachineLearningServices/workspaces/computes@2024-10-01' = {
  parent: workspace
  name: 'cpu-cluster'
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    computeType: 'AmlCompute'
    properties: {
      vmSize: trainingVmSize
      vmPriority: 'Dedicated'
      scaleSettings: {
        minNodeCount: 0
        maxNodeCount: trainingMaxNodes
        nodeIdleTimeBeforeScaleDown: 'PT10M'
      }
    }
  }
}

// Identity-based datastores (no credentials): the job runs read them with the cluster's identity.
resource jobsDatastore 'Microsoft.MachineLearningServices/workspaces/datastores@2024-10-01' = {
  parent: workspace
  name: 'multiline_jobs'
  properties: {
    datastoreType: 'AzureBlob'
    accountName: data.name
    containerName: 'jobs'
    endpoint: environment().suffixes.storage
    protocol: 'https'
    credentials: { credentialsType: 'None' }
  }
}

resource artifactsDatastore 'Microsoft.MachineLearningServices/workspaces/datastores@2024-10-01' = {
  parent: workspace
  name: 'multiline_artifacts'
  properties: {
    datastoreType: 'AzureBlob'
    accountName: data.name
    containerName: 'artifacts'
    endpoint: environment().suffixes.storage
    protocol: 'https'
    credentials: { credentialsType: 'None' }
  }
}

resource trainingEnvironment 'Microsoft.MachineLearningServices/workspaces/environments@2024-10-01' = {
  parent: workspace
  name: 'multiline-training'
  properties: {
    description: 'Python 3.11 with the libraries of training/ (infra/training-conda.yml)'
  }
}

resource trainingEnvironmentVersion 'Microsoft.MachineLearningServices/workspaces/environments/versions@2024-10-01' = {
  parent: trainingEnvironment
  name: '1'
  properties: {
    image: 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest'
    condaFile: loadTextContent('training-conda.yml')
    osType: 'Linux'
  }
}

// ---- the Function App (Flex Consumption, Python 3.11) ------------------------------------------------
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${host.properties.primaryEndpoints.blob}deploymentpackage'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: { name: 'python', version: '3.11' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        // Functions host storage with the managed identity (no connection string).
        { name: 'AzureWebJobsStorage__accountName', value: host.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        // What the code reads (docs/AZURE.md has the table).
        { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
        { name: 'AZURE_SUBSCRIPTION_ID', value: subscription().subscriptionId }
        { name: 'AZURE_RESOURCE_GROUP', value: resourceGroup().name }
        { name: 'MULTILINE_MODE', value: 'azure' }
        { name: 'MULTILINE_STORAGE_ACCOUNT_URL', value: data.properties.primaryEndpoints.blob }
        { name: 'MULTILINE_STORAGE_CONNECTION_STRING', value: '' }
        { name: 'MULTILINE_SPEC', value: 'specs/air-quality.json' }
        { name: 'MULTILINE_RAW_CONTAINER', value: 'raw' }
        { name: 'MULTILINE_DEBOUNCE_SECONDS', value: '300' }
        { name: 'MULTILINE_POLL_SECONDS', value: '60' }
        { name: 'MULTILINE_TRAINING_DEADLINE_SECONDS', value: '14400' }
        { name: 'MULTILINE_BUILD_DEADLINE_SECONDS', value: '3600' }
        { name: 'MULTILINE_TRAINING_CONCURRENCY', value: '2' }
        { name: 'MULTILINE_PROMOTION_MARGIN', value: '0.01' }
        { name: 'MULTILINE_DRIFT_PSI_THRESHOLD', value: '0.1' }
        { name: 'MULTILINE_DRIFT_SHARE', value: '0.5' }
        { name: 'MULTILINE_DRIFT_JS_THRESHOLD', value: '0.1' }
        { name: 'MULTILINE_DRIFT_WASSERSTEIN_THRESHOLD', value: '0.1' }
        { name: 'MULTILINE_DRIFT_MISSING_RATE_THRESHOLD', value: '0.1' }
        { name: 'MULTILINE_RETRAIN_POLICY', value: 'always' }
        { name: 'MULTILINE_RETRAIN_MAX_AGE_DAYS', value: '30' }
        { name: 'MULTILINE_CANDIDATES', value: 'per_source+fleet' }
        { name: 'MULTILINE_RECONCILE_SECONDS', value: '300' }
        { name: 'MULTILINE_MAX_BLOB_BYTES', value: '268435456' }
        { name: 'MULTILINE_FUTURE_TOLERANCE_HOURS', value: '24' }
        { name: 'MULTILINE_MAX_RANGE_DAYS', value: '3660' }
        { name: 'MULTILINE_FLEET_MAX_AGE_DAYS', value: '7' }
        { name: 'MULTILINE_BOOTSTRAP_BLOCK_ROWS', value: '24' }
        { name: 'MULTILINE_BOOTSTRAP_RESAMPLES', value: '2000' }
        { name: 'MULTILINE_BOOTSTRAP_CONFIDENCE', value: '0.95' }
        { name: 'MULTILINE_SOURCE_ID_PATTERN', value: '[A-Za-z0-9][A-Za-z0-9_-]*' }
        { name: 'MULTILINE_SOURCE_ID_MAX_LENGTH', value: '63' }
        { name: 'MULTILINE_BLOB_DATE_SLACK_DAYS', value: '31' }
        { name: 'MULTILINE_STATE_DIR', value: '/tmp/multiline' }
        { name: 'MULTILINE_RECONCILE_SCHEDULE', value: '0 */15 * * * *' }
        { name: 'MULTILINE_AML_WORKSPACE', value: workspace.name }
        { name: 'MULTILINE_AML_COMPUTE', value: cluster.name }
        { name: 'MULTILINE_AML_ENVIRONMENT', value: 'azureml:${trainingEnvironment.name}:${trainingEnvironmentVersion.name}' }
        { name: 'MULTILINE_AML_CODE', value: '' }
        { name: 'MULTILINE_AML_EXPERIMENT', value: 'multiline' }
        { name: 'MULTILINE_AML_JOBS_DATASTORE', value: jobsDatastore.name }
        { name: 'MULTILINE_AML_ARTIFACTS_DATASTORE', value: artifactsDatastore.name }
        { name: 'MULTILINE_AML_MODEL_PREFIX', value: 'multiline-' }
        { name: 'MULTILINE_ACR_NAME', value: registry.name }
        { name: 'MULTILINE_IMAGE_OS', value: 'Linux' }
        { name: 'MULTILINE_IMAGE_ARCHITECTURE', value: 'amd64' }
      ]
    }
  }
  // The host reaches its storage with the identity from the first start: grant the roles first.
  dependsOn: [hostRoles, dataRoles, insightsRoles]
}

// ---- Event Grid: BlobCreated in the raw container -> the blob_created function -----------------------
resource blobEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${token}'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    source: data.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource blobCreatedSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscription) {
  parent: blobEvents
  name: 'raw-blob-created'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/blob_created'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/raw/blobs/'
      enableAdvancedFilteringOnArrays: true
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: identity.id
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: data.id
          blobContainerName: 'deadletter'
        }
      }
    }
  }
  dependsOn: [dataContainer, dataRoles]
}

// ---- role assignments: the identity's least privileges ------------------------------------------------
// Data account: read raw uploads, write documents, models, images, dead letters.
resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(data.id, identity.id, roles.storageBlobDataContributor)
  scope: data
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// Host account: the Functions runtime, the Durable Functions task hub (queues, tables) and the package.
resource hostRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]: {
  name: guid(host.id, identity.id, role)
  scope: host
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

// Azure ML: submit and cancel pipeline jobs, register and tag models (Function App and training steps).
resource mlRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, identity.id, roles.azureMLDataScientist)
  scope: workspace
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLDataScientist)
  }
}

// Azure ML's storage: the code snapshot upload when MULTILINE_AML_CODE is empty.
resource mlStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(mlStorage.id, identity.id, roles.storageBlobDataContributor)
  scope: mlStorage
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// ACR: Container Registry Tasks Contributor carries listBuildSourceUploadUrl/action, scheduleRun/action and
// runs/read (upload the build context, queue and poll quick runs) but no image push or pull; AcrPush adds
// push and pull: for the runs that use the caller's registry permissions, and for the training cluster,
// which pulls the Azure ML environment image from this registry with the same identity (AcrPush includes
// the pull permission, so no separate AcrPull assignment).
resource registryRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [roles.containerRegistryTasksContributor, roles.acrPush]: {
  name: guid(registry.id, identity.id, role)
  scope: registry
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

// Application Insights with local auth disabled: telemetry is sent with the identity.
resource insightsRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output dataBlobEndpoint string = data.properties.primaryEndpoints.blob
output workspaceName string = workspace.name
output registryName string = registry.name
