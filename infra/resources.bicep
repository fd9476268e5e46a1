// Everything Multiline needs in one resource group. Identities: two user-assigned managed identities with
// the least built-in roles that work, so that neither holds what only the other needs:
//   - the app identity: the Function App (orchestrations, activities, image builds) and the Event Grid
//     system topic (dead-lettering);
//   - the training identity: the Azure ML compute cluster and the pipeline steps it runs.
// No keys anywhere: every data-plane access is Entra ID.

param environmentName string
param location string
param tags object
param deployEventSubscription bool
param trainingVmSize string
param trainingMaxNodes int
@description('Object id of the user (or CI principal) running azd up: gets blob data access on the data account for uploads and inspection; empty for none')
param principalId string = ''

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
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${token}'
  location: location
  tags: tags
}

resource trainingIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-train-${token}'
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
    // Required by the API even though RBAC decides access.
    accessPolicies: []
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
    userAssignedIdentities: { '${trainingIdentity.id}': {} }
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

var trainingBaseImage = 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest'
var trainingCondaFile = loadTextContent('training-conda.yml')

// Environment versions are immutable: the version name is a hash of what defines it, so re-running
// azd provision with unchanged files is a no-op and an edited conda file becomes a new version by itself.
resource trainingEnvironmentVersion 'Microsoft.MachineLearningServices/workspaces/environments/versions@2024-10-01' = {
  parent: trainingEnvironment
  name: uniqueString(trainingBaseImage, trainingCondaFile)
  properties: {
    image: trainingBaseImage
    condaFile: trainingCondaFile
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
        // check_drift and compare_champion hold a source's recent rows as pandas frames next to azure-ai-ml,
        // scikit-learn and pyarrow; with data files of up to MULTILINE_MAX_BLOB_BYTES (256 MB) read eight at
        // a time, 2048 MB leaves too little headroom.
        instanceMemoryMB: 4096
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
        { name: 'MULTILINE_AML_IDENTITY_CLIENT_ID', value: trainingIdentity.properties.clientId }
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
  dependsOn: [deploymentContainer, hostRoles, dataRoles, insightsRoles]
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

// ---- role assignments: each identity's least privileges ----------------------------------------------
// App identity on the data account: read raw uploads, write documents, models, images, dead letters.
resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(data.id, identity.id, roles.storageBlobDataContributor)
  scope: data
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// App identity on the host account: the Functions runtime, the Durable Functions task hub (queues,
// tables) and the deployment package.
resource hostRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]: {
  name: guid(host.id, identity.id, role)
  scope: host
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

// App identity on Azure ML: submit, poll and cancel pipeline jobs, read and tag model versions. The code
// snapshot upload (MULTILINE_AML_CODE empty) goes through a SAS the workspace hands out, so no role on
// Azure ML's own storage account is needed.
resource mlRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, identity.id, roles.azureMLDataScientist)
  scope: workspace
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLDataScientist)
  }
}

// App identity on ACR: Container Registry Tasks Contributor carries listBuildSourceUploadUrl/action,
// scheduleRun/action and runs/read (upload the build context, queue and poll quick runs). The run pushes
// the image with a token of its own, and the digest comes from the run record, so no AcrPush.
resource registryRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, identity.id, roles.containerRegistryTasksContributor)
  scope: registry
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.containerRegistryTasksContributor)
  }
}

// App identity on Application Insights (local auth disabled): telemetry is sent with the identity.
resource insightsRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

// Training identity on the data account: the steps read the job document and raw blobs (identity-based
// datastores) and write the run's rows, evaluation data and model artifacts.
resource trainingDataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(data.id, trainingIdentity.id, roles.storageBlobDataContributor)
  scope: data
  properties: {
    principalId: trainingIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// Training identity on Azure ML: the register step creates the model version.
resource trainingMlRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, trainingIdentity.id, roles.azureMLDataScientist)
  scope: workspace
  properties: {
    principalId: trainingIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLDataScientist)
  }
}

// Training identity on ACR: the cluster pulls the built Azure ML environment image (admin user is off).
resource trainingRegistryRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, trainingIdentity.id, roles.acrPull)
  scope: registry
  properties: {
    principalId: trainingIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
  }
}

// The person running azd up: upload data and read results with `az storage blob ... --auth-mode login`
// (shared keys are off on the data account). No principalType: it may be a user or a CI principal.
resource deployerDataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(data.id, principalId, roles.storageBlobDataContributor)
  scope: data
  properties: {
    principalId: principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output dataBlobEndpoint string = data.properties.primaryEndpoints.blob
output workspaceName string = workspace.name
output registryName string = registry.name
output trainingIdentityClientId string = trainingIdentity.properties.clientId
